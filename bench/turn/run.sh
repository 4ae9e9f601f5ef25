#!/usr/bin/env bash
# TURN benchmark: the p2psip relay (--roles relay) next to coturn, same turnutils_uclient load.
#
#   bench/turn/run.sh           # from anywhere; builds ./server into a scratch dir
#
# Each server runs alone on core 0 (taskset -c 0), the clients (turnutils_uclient) and the
# echo peer (turnutils_peer) on core 1, one server after the other. Both use the TURN REST
# scheme with the same shared secret (p2psip: --relay-secret-file; coturn: use-auth-secret).
# Per server:
#   relay   steps the number of clients (CLIENTS), each client paced by -z $PACE_MS, -n $MSGS
#           messages of 120 bytes to the echo peer and back (UDP, channel data, no RTCP
#           allocation: -c). Stops after the first step with more than 0.1 % loss.
#           relayed packets = 2 x echoes received (client->peer and peer->client both cross
#           the relay); rate = 2 x the steady echo rate from uclient's once-a-second progress
#           lines (see sum_outputs); CPU per packet = server CPU over the whole step / relayed
#           packets (so it includes the allocations and idle seconds of the step).
#   alloc   ALLOCS allocations from parallel "turnutils_uclient -O" (allocate, refresh, exit)
#           processes; allocations/s = relay addresses received / wall time.
#   memory  HOLD clients allocate and hang (-h); memory per allocation = (RSS held - RSS
#           before) / allocations, then the clients are killed.
# Server CPU = utime+stime of the server process (all threads) from /proc/<pid>/stat.
#
# The p2psip relay caps one user id at 8 live allocations (AllocationsPerUser, no flag), so
# the load is spread over uclient processes of GROUP clients each, every process with its own
# REST user; coturn gets exactly the same processes.
#
# Environment (all optional):
#   CLIENTS="8 16 32 64 128 256"   client counts to step through, ascending
#   PACE_MS=1                      uclient -z (per-client interval; its timer makes it ~8 ms)
#   MSGS=2000                      messages per client per step
#   GROUP=4                        clients per uclient process
#   ALLOCS=200 HOLD=200            allocation-rate and memory tests
#   SERVERS="p2psip coturn"        which servers, in order
#   P2PSIP_BIN=path                use this binary instead of building ./server
#   OUT=dir                        logs (default: a new /tmp dir, kept)
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }
for tool in turnserver turnutils_uclient turnutils_peer taskset ss awk go; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (coturn: apt-get install coturn). This script installs nothing."
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server on core 0, clients on core 1)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLIENTS=${CLIENTS:-"8 16 32 64 128 256"}
PACE_MS=${PACE_MS:-1}
MSGS=${MSGS:-2000}
GROUP=${GROUP:-4}
ALLOCS=${ALLOCS:-200}
HOLD=${HOLD:-200}
SERVERS=${SERVERS:-"p2psip coturn"}
OUT=${OUT:-$(mktemp -d /tmp/turnbench.XXXXXX)}
mkdir -p "$OUT"
CLK_TCK=$(getconf CLK_TCK)
SECRET=turn-bench-secret
LEN=120

P2P_ADDR=127.0.0.61
COT_ADDR=127.0.0.62
PEER_ADDR=127.0.0.63
PEER_PORT=3480

SERVER_PID=""
PEER_PID=""
CLIENT_PIDS=()
SCRATCH=$(mktemp -d /tmp/turnbench-run.XXXXXX)
cleanup() {
	set +e
	for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	stop_server
	[ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

wait_udp() { # addr:port
	for _ in $(seq 100); do
		ss -Huln "src $1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	die "nothing listens on udp $1"
}

stop_server() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}

start_server() { # name
	case $1 in
	p2psip)
		mkdir -p "$SCRATCH/p2psip-data"
		printf '%s' "$SECRET" >"$SCRATCH/secret"
		taskset -c 0 "$P2PSIP_BIN" --data "$SCRATCH/p2psip-data" --https 127.0.0.1:0 --sip '' --sips '' \
			--mdns=false --roles relay --public-addr "$P2P_ADDR" --turn "$P2P_ADDR:3478" \
			--relay-ports 45000-49999 --relay-private-peers --relay-bandwidth 0 \
			--relay-secret-file "$SCRATCH/secret" >"$OUT/p2psip.log" 2>&1 &
		SERVER_PID=$!
		ADDR=$P2P_ADDR
		;;
	coturn)
		cat >"$SCRATCH/coturn.conf" <<-EOF
			listening-ip=$COT_ADDR
			listening-port=3478
			relay-ip=$COT_ADDR
			min-port=40000
			max-port=44999
			realm=bench.example
			use-auth-secret
			static-auth-secret=$SECRET
			no-tls
			no-dtls
			no-cli
			allow-loopback-peers
			userdb=$SCRATCH/turndb.sqlite
			pidfile=$SCRATCH/turnserver.pid
			log-file=$OUT/coturn.log
			simple-log
		EOF
		taskset -c 0 turnserver -c "$SCRATCH/coturn.conf" >"$OUT/coturn.stdout" 2>&1 &
		SERVER_PID=$!
		ADDR=$COT_ADDR
		;;
	*) die "unknown server $1" ;;
	esac
	wait_udp "$ADDR:3478"
	sleep 1
}

# run_clients tag total_clients msgs extra-args... : GROUP clients per uclient process,
# all in parallel on core 1, each process with its own REST user; waits for all.
run_clients() {
	local tag=$1 total=$2 msgs=$3; shift 3
	local i=0 m pids=()
	while [ "$total" -gt 0 ]; do
		m=$((total < GROUP ? total : GROUP))
		taskset -c 1 turnutils_uclient -u "$tag-$i" -W "$SECRET" -c -e "$PEER_ADDR" -r "$PEER_PORT" \
			-l "$LEN" -n "$msgs" -m "$m" "$@" "$ADDR" >"$OUT/$tag-$i.out" 2>&1 &
		pids+=($!)
		total=$((total - m)); i=$((i + 1))
	done
	wait "${pids[@]}" || true
}

# sum_outputs tag: prints "send recv transmit_s failed_allocs rate", where rate is the
# steady echo rate: per uclient process, the slope of its once-a-second progress lines
# ("T: : start_mclient: msz=.., tot_recv_msgs=R") from the first second with echoes to the
# last progress line, summed over the processes (they run side by side). The fixed start
# and end waits of uclient (a few seconds) are left out this way.
sum_outputs() {
	awk '
		FNR == 1 { if (prev != "") flush(); prev = FILENAME; t1 = -1; t2 = -1 }
		function flush() { if (t1 >= 0 && t2 > t1) rate += (r2 - r1) / (t2 - t1); else if (ft > 0) rate += fr / ft }
		/start_mclient: msz=/ {
			t = $1 + 0; line = $0; gsub(/[=,]/, " ", line); n = split(line, w, " ")
			for (i = 1; i < n; i++) if (w[i] == "tot_recv_msgs") rv = w[i+1] + 0
			if (rv > 0 && t1 < 0) { t1 = t; r1 = rv }
			if (t1 >= 0) { t2 = t; r2 = rv }
			next
		}
		/start_mclient: tot_send_msgs=/ { gsub(/[=,]/, " "); for (i = 1; i <= NF; i++) { if ($i == "tot_send_msgs") s += $(i+1); if ($i == "tot_recv_msgs") { r += $(i+1); fr = $(i+1) } } }
		/Total transmit time is/ { ft = $NF; if ($NF > t) t = $NF }
		/Cannot complete Allocation|error 486/ { f++ }
		END { if (prev != "") flush(); printf "%d %d %d %d %d\n", s, r, t, f, rate }' "$OUT/$1"-*.out
}

RESULTS=$OUT/results.tsv
: >"$RESULTS"

bench_server() { # name
	local name=$1 rss0 rss1 c0 c1 t0 t1 send recv tx failed loss pps cpu_us best_pps=0 best_m=0 best_cpu=0 best_loss=0
	log "$name: starting (core 0)"
	start_server "$name"
	rss0=$(rss_kb "$SERVER_PID")
	log "$name: pid $SERVER_PID, RSS ${rss0} KiB idle"

	# --- relayed packets/s -------------------------------------------------------
	relay_step() { # clients; sets step_ok
		local m=$1
		c0=$(cpu_ticks "$SERVER_PID")
		run_clients "$name-relay-$m" "$m" "$MSGS" -z "$PACE_MS"
		c1=$(cpu_ticks "$SERVER_PID")
		read -r send recv tx failed rate < <(sum_outputs "$name-relay-$m")
		loss=$(awk -v s="$send" -v r="$recv" 'BEGIN { printf "%.3f", s ? 100 * (s - r) / s : 100 }')
		pps=$((2 * rate))
		cpu_us=$(awk -v c=$((c1 - c0)) -v k="$CLK_TCK" -v r="$recv" 'BEGIN { printf "%.2f", r ? c / k * 1e6 / (2 * r) : 0 }')
		log "$name: $m clients: sent $send, echoed $recv, loss $loss %, ${tx} s, $pps relayed pkt/s, server CPU $(awk -v c=$((c1 - c0)) -v k="$CLK_TCK" 'BEGIN{printf "%.2f", c/k}') s = $cpu_us us/pkt, failed allocs $failed"
		printf '%s\trelay\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$m" "$send" "$recv" "$loss" "$tx" "$pps" "$cpu_us" "$failed" >>"$RESULTS"
		step_ok=1
		if [ "$failed" -gt 0 ] || awk -v l="$loss" 'BEGIN { exit !(l > 0.1) }'; then step_ok=0; return; fi
		if [ "$pps" -gt "$best_pps" ]; then best_pps=$pps best_m=$m best_cpu=$cpu_us best_loss=$loss; fi
	}
	local step_ok last_ok=0 mid
	for m in $CLIENTS; do
		relay_step "$m"
		if [ "$step_ok" = 0 ]; then
			log "$name: loss above 0.1 % (or failed allocations) at $m clients; stop stepping"
			mid=$(((last_ok + m) / 2 / GROUP * GROUP))
			if [ "$mid" -gt "$last_ok" ] && [ "$mid" -lt "$m" ]; then
				log "$name: once more between: $mid clients"
				relay_step "$mid"
			fi
			break
		fi
		last_ok=$m
	done

	# --- allocations/s ---------------------------------------------------------------
	local ok
	c0=$(cpu_ticks "$SERVER_PID"); t0=$(now)
	GROUP_SAVE=$GROUP; GROUP=2   # -O makes extra allocations per client; stay under 8 per user
	run_clients "$name-alloc" "$ALLOCS" 1 -O -v
	GROUP=$GROUP_SAVE
	t1=$(now); c1=$(cpu_ticks "$SERVER_PID")
	ok=$(cat "$OUT/$name-alloc"-*.out | grep -c 'Received relay addr' || true)
	local aps acpu
	aps=$(awk -v n="$ok" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", n / (b - a) }')
	acpu=$(awk -v c=$((c1 - c0)) -v k="$CLK_TCK" -v n="$ok" 'BEGIN { printf "%d", n ? c / k * 1e6 / n : 0 }')
	log "$name: $ok relay addresses in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s = $aps allocations/s, server CPU $acpu us/allocation"

	# --- memory per allocation ----------------------------------------------------
	sleep 2
	rss0=$(rss_kb "$SERVER_PID")
	local i=0 left=$HOLD m
	CLIENT_PIDS=()
	while [ "$left" -gt 0 ]; do
		m=$((left < GROUP ? left : GROUP))
		taskset -c 1 turnutils_uclient -u "$name-hold-$i" -W "$SECRET" -c -e "$PEER_ADDR" -r "$PEER_PORT" \
			-l "$LEN" -n 1 -m "$m" -h -v "$ADDR" >"$OUT/$name-hold-$i.out" 2>&1 &
		CLIENT_PIDS+=($!)
		left=$((left - m)); i=$((i + 1))
	done
	sleep 8
	rss1=$(rss_kb "$SERVER_PID")
	local held
	held=$(cat "$OUT/$name-hold"-*.out | grep -c 'Received relay addr' || true)
	for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait "${CLIENT_PIDS[@]}" 2>/dev/null || true
	CLIENT_PIDS=()
	local mem
	mem=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { printf "%.1f", n ? (b - a) / n : 0 }')
	log "$name: $held allocations held: RSS $rss0 -> $rss1 KiB = $mem KiB/allocation"

	printf '%s\tsummary\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$best_m" "$best_pps" "$best_cpu" "$best_loss" "$aps" "$acpu" "$mem" "$rss1" "$held" >>"$RESULTS"
	stop_server
}

log "out: $OUT; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
if [ -z "${P2PSIP_BIN:-}" ]; then
	log "building ./server"
	(cd "$REPO" && go build -o "$SCRATCH/p2psip" ./server)
	P2PSIP_BIN=$SCRATCH/p2psip
fi
taskset -c 1 turnutils_peer -L "$PEER_ADDR" -p "$PEER_PORT" >"$OUT/peer.log" 2>&1 &
PEER_PID=$!
wait_udp "$PEER_ADDR:$PEER_PORT"

for s in $SERVERS; do bench_server "$s"; done

log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Relay steps (per step: clients, sent, echoed, loss %, transmit s, relayed pkt/s, server us/pkt, failed allocs):"
awk -F'\t' '$2 == "relay" { printf "  %-7s %4s clients  sent %7s  echoed %7s  loss %6s %%  %3s s  %7s pkt/s  %6s us/pkt  %s failed\n", $1, $3, $4, $5, $6, $7, $8, $9, $10 }' "$RESULTS"
echo
printf '%-28s %12s %12s %8s\n' "" p2psip coturn ratio
awk -F'\t' '
	$2 == "summary" { m[$1] = $3; pps[$1] = $4; cpu[$1] = $5; aps[$1] = $7; acpu[$1] = $8; mem[$1] = $9 }
	function row(label, a, b, inv) {
		r = (a > 0 && b > 0) ? (inv ? b / a : a / b) : 0
		printf "%-28s %12s %12s %7.2fx\n", label, a, b, r
	}
	END {
		row("clients at best step", m["p2psip"], m["coturn"], 0)
		row("relayed pkt/s (<=0.1% loss)", pps["p2psip"], pps["coturn"], 0)
		row("server CPU us/relayed pkt", cpu["p2psip"], cpu["coturn"], 1)
		pc["p2psip"] = cpu["p2psip"] > 0 ? int(1e6 / cpu["p2psip"]) : 0
		pc["coturn"] = cpu["coturn"] > 0 ? int(1e6 / cpu["coturn"]) : 0
		row("relayed pkt/s per busy core", pc["p2psip"], pc["coturn"], 0)
		row("allocations/s", aps["p2psip"], aps["coturn"], 0)
		row("server CPU us/allocation", acpu["p2psip"], acpu["coturn"], 1)
		row("KiB RSS per allocation", mem["p2psip"], mem["coturn"], 1)
		print "(ratio: p2psip relative to coturn, >1 = p2psip better; CPU and memory rows inverted)"
	}' "$RESULTS"
echo "logs: $OUT"
