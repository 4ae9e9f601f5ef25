#!/usr/bin/env bash
# SIP benchmark: the p2psip peer (one-node overlay) next to Kamailio, same sipp load.
#
#   bench/sip/run.sh            # from anywhere; builds ./server into the work dir
#
# Each server runs alone on core 0 (taskset -c 0), sipp on core 1 (taskset -c 1),
# one server after the other. Two tests per server:
#   register  one REGISTER per call, a new user per call (register_unique.xml)
#   invite    a sipp UAS registers as "bob", then uac_rr.xml calls bob through the
#             server (INVITE/100/180/200/ACK/BYE/200, zero call length)
# Each test steps up the offered rate (-r) for STEP_SECONDS per step and stops at
# the first step with >= 1 % failed calls (then tries once between the last pass
# and the first fail). Failures come from sipp's per-second statistics CSV
# (-trace_stat), p99 from its per-call response-time CSV (-trace_rtt), server CPU
# from /proc/<pid>/stat of the server's processes.
#
# Environment (all optional):
#   STEP_SECONDS=8                 load per step
#   REG_RATES="500 1000 ..."      REGISTER rates to try, ascending
#   INV_RATES="250 500 ..."        INVITE rates to try, ascending
#   SERVERS="p2psip kamailio"      which servers, in order
#   P2PSIP_BIN=path                use this binary instead of building ./server
#   OUT=dir                        where logs and CSVs go (default: a new /tmp dir, kept)
#   PERF=1                         perf record -g the p2psip peer during one step per test
#   NICE=-10                       nice level of servers and sipp (default -10 as root, else 0),
#                                  so other jobs on the machine disturb the run less
#   KAM_SHM_MB=4096                Kamailio's shared memory (-m): enough that usrloc and tm do not
#                                  run out before its CPU does (with 512 MiB they did, at about
#                                  470 k bindings and 3500 calls/s), as the Go peer has the
#                                  machine's memory
#   SIPP_BUFF=4194304              sipp's socket buffers (-buff_size; sipp's default is 64 KiB,
#                                  which the UAS overflowed at 2000 calls/s, failing calls
#                                  whatever the server); the kernel caps it at rmem_max
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }
for tool in sipp kamailio taskset ss awk; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; install it first (sipp: apt-get install sip-tester; kamailio: apt-get install kamailio; taskset: util-linux; ss: iproute2). This script installs nothing."
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server on core 0, sipp on core 1)"
if [ "${PERF:-0}" = 1 ]; then command -v perf >/dev/null 2>&1 || die "PERF=1 needs perf (apt-get install linux-perf)"; fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STEP_SECONDS=${STEP_SECONDS:-8}
REG_RATES=${REG_RATES:-"500 1000 1500 2000 3000 4000 6000 8000 10000 12000 15000"}
INV_RATES=${INV_RATES:-"250 500 750 1000 1250 1500 2000 2500 3000 4000"}
SERVERS=${SERVERS:-"p2psip kamailio"}
OUT=${OUT:-$(mktemp -d /tmp/sipbench.XXXXXX)}
mkdir -p "$OUT"
CLK_TCK=$(getconf CLK_TCK)
if [ "$(id -u)" = 0 ]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
PIN_SERVER=(nice -n "$NICE" taskset -c 0)
PIN_SIPP=(nice -n "$NICE" taskset -c 1)
SIPP_BUFF=${SIPP_BUFF:-4194304}

# Addresses: all loopback, away from the usual 127.0.0.1:5060.
P2P_ADDR=127.0.0.21   # p2psip peer, SIP on :5060
KAM_ADDR=127.0.0.22   # Kamailio, SIP on :5060
UAS_ADDR=127.0.0.23   # sipp UAS ("bob"), :5070
UAC_ADDR=127.0.0.24   # sipp UAC and REGISTER client, :5080

SERVER_PID=""
UAS_PID=""
PERF_PID=""
SCRATCH=$(mktemp -d /tmp/sipbench-run.XXXXXX)
cleanup() {
	set +e
	[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null
	[ -n "$UAS_PID" ] && kill "$UAS_PID" 2>/dev/null
	stop_server
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- servers -------------------------------------------------------------

BIN=${P2PSIP_BIN:-}
if [ -z "$BIN" ] && [[ " $SERVERS " == *" p2psip "* ]]; then
	command -v go >/dev/null 2>&1 || die "go not found (or set P2PSIP_BIN)"
	BIN=$SCRATCH/p2psip
	log "building $REPO/server"
	(cd "$REPO" && go build -o "$BIN" ./server)
fi

server_addr() { if [ "$1" = p2psip ]; then echo "$P2P_ADDR"; else echo "$KAM_ADDR"; fi; }
server_domain() { if [ "$1" = p2psip ]; then echo p2psip.local; else echo atlanta.example; fi; }

wait_udp() { # addr:port
	for _ in $(seq 100); do
		ss -Hlun "src $1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

start_server() { # name test
	local name=$1 test=$2 dir
	dir=$(mktemp -d "$SCRATCH/$name.XXXXXX")
	if [ "$name" = p2psip ]; then
		"${PIN_SERVER[@]}" "$BIN" --data "$dir" --https "$P2P_ADDR:0" --p2p-host "$P2P_ADDR" \
			--sip "$P2P_ADDR:5060" --sips "$P2P_ADDR:0" --mdns=false --log-level warn --registrations-per-source 0 \
			>"$OUT/$name-$test.stdout" 2>"$OUT/$name-$test.stderr" &
		SERVER_PID=$!
		for _ in $(seq 100); do
			grep -q 'p2psip peer ready' "$OUT/$name-$test.stdout" 2>/dev/null && break
			kill -0 "$SERVER_PID" 2>/dev/null || die "p2psip exited: $(tail -5 "$OUT/$name-$test.stderr")"
			sleep 0.1
		done
		grep -q 'p2psip peer ready' "$OUT/$name-$test.stdout" || die "p2psip not ready after 10 s"
	else
		sed -e "s|@RUNDIR@|$dir|g" -e "s|@ADDR@|$KAM_ADDR|g" "$HERE/kamailio-bench.cfg" >"$dir/kamailio.cfg"
		kamailio -c -f "$dir/kamailio.cfg" >"$dir/check.log" 2>&1 || die "kamailio config check failed: $(tail -5 "$dir/check.log")"
		"${PIN_SERVER[@]}" kamailio -f "$dir/kamailio.cfg" -DD -E -P "$dir/kamailio.pid" -Y "$dir" -m "${KAM_SHM_MB:-4096}" -M 8 \
			>"$OUT/$name-$test.stdout" 2>"$OUT/$name-$test.stderr" &
		SERVER_PID=$!
	fi
	wait_udp "$(server_addr "$name"):5060" || die "$name does not listen on $(server_addr "$name"):5060"
	sleep 0.5
}

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# CPU ticks (user+system) of the server: the process and its children
# (Kamailio forks its workers; p2psip is one process, all threads counted).
server_ticks() {
	local pids p t=0 v
	pids="$SERVER_PID $(pgrep -P "$SERVER_PID" 2>/dev/null | tr '\n' ' ')"
	for p in $pids; do
		v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}

server_rss_mb() {
	local pids p t=0 v
	pids="$SERVER_PID $(pgrep -P "$SERVER_PID" 2>/dev/null | tr '\n' ' ')"
	for p in $pids; do
		v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo $((t / 1024))
}

# ---- sipp ----------------------------------------------------------------

# summarize STAT_CSV RTT_CSV -> "outgoing success failed retrans rate_achieved p50 p99"
summarize() {
	local stat=$1 rtt=$2 head
	head=$(awk -F';' 'NR==1 {
		for (i = 1; i <= NF; i++) c[$i] = i
		print c["OutgoingCall(C)"], c["SuccessfulCall(C)"], c["FailedCall(C)"], c["Retransmissions(C)"], c["CallRate(P)"], c["ElapsedTime(P)"]
	}' "$stat")
	# shellcheck disable=SC2086
	set -- $head
	local stats
	stats=$(awk -F';' -v o="$1" -v s="$2" -v f="$3" -v r="$4" -v cr="$5" '
		NR > 1 { out[NR] = $o; suc = $s; fail = $f; re = $r; rate[NR] = $cr; n = NR }
		END {
			total = out[n]
			# achieved rate: mean CallRate(P) over the periods in which calls were
			# still being created (the last, partial one excluded)
			k = 0; sum = 0
			for (i = 2; i <= n; i++) if (out[i] < total && out[i] > 0) { sum += rate[i]; k++ }
			ach = (k > 0) ? sum / k : 0
			printf "%d %d %d %d %.0f", total, suc, fail, re, ach
		}' "$stat")
	local pct
	if [ -s "$rtt" ]; then
		pct=$(awk -F';' 'NR > 1 && $3 == 1 { print $2 }' "$rtt" | sort -n | awk '
			{ v[NR] = $1 }
			END {
				if (NR == 0) { print "- -"; exit }
				i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
				print v[i50], v[i99]
			}')
	else
		pct="- -"
	fi
	echo "$stats $pct"
}

# run_sipp TAG RATE COUNT ARGS... : one step; leaves $OUT/TAG.stat.csv etc.
run_sipp() {
	local tag=$1 rate=$2 count=$3 d
	shift 3
	d=$OUT/$tag
	rm -rf "$d"
	mkdir -p "$d"
	# -recv_timeout: a lost answer fails its call after 5 s instead of 32 s;
	# -timeout: sipp stops for good 15 s after the step's nominal end.
	(cd "$d" && "${PIN_SIPP[@]}" sipp "$@" -r "$rate" -rp 1000 -m "$count" -nostdin -buff_size "$SIPP_BUFF" \
		-recv_timeout 5000 -timeout $((STEP_SECONDS + 15)) \
		-trace_stat -fd 1 -stf stat.csv -trace_rtt -trace_err -error_file errors.log \
		>sipp.out 2>&1) || true
}

users_csv() { # file prefix count domain
	awk -v p="$2" -v n="$3" -v d="$4" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "%s%07d;%s\n", p, i, d }' >"$1"
}

# step NAME TEST RATE -> prints one result line, returns 0 if < 1 % failures
# Result line: name test rate outgoing success failed retrans achieved p50 p99 cpu% cpu_us_per_call
step() {
	local name=$1 test=$2 rate=$3 count tag addr t0 t1 w0 w1 res
	count=$((rate * STEP_SECONDS))
	tag=$name-$test-$rate
	addr=$(server_addr "$name")
	t0=$(server_ticks)
	w0=$(date +%s.%N)
	if [ -n "${PERF_STEP:-}" ] && [ "$PERF_STEP" = "$rate" ]; then
		perf record -g -o "$OUT/perf-$tag.data" -p "$SERVER_PID" -- sleep "$STEP_SECONDS" >"$OUT/perf-$tag.log" 2>&1 &
		PERF_PID=$!
	fi
	if [ "$test" = register ]; then
		users_csv "$SCRATCH/users-$tag.csv" "r${rate}u" "$count" "$(server_domain "$name")"
		run_sipp "$tag" "$rate" "$count" -sf "$HERE/register_unique.xml" -inf "$SCRATCH/users-$tag.csv" \
			-i "$UAC_ADDR" -p 5080 "$addr:5060"
	else
		run_sipp "$tag" "$rate" "$count" -sf "$HERE/uac_rr.xml" -s bob -d 0 \
			-i "$UAC_ADDR" -p 5080 "$addr:5060"
	fi
	t1=$(server_ticks)
	w1=$(date +%s.%N)
	if [ -n "$PERF_PID" ]; then wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""; fi
	local rtt
	rtt=$(ls "$OUT/$tag"/*_rtt.csv 2>/dev/null | head -1 || true)
	[ -s "$OUT/$tag/stat.csv" ] || die "sipp wrote no statistics for $tag: $(tail -5 "$OUT/$tag/sipp.out")"
	res=$(summarize "$OUT/$tag/stat.csv" "$rtt")
	# shellcheck disable=SC2086
	set -- $res
	local out=$1 suc=$2 fail=$3 cpu cpu_call
	cpu=$(awk -v a="$t0" -v b="$t1" -v w0="$w0" -v w1="$w1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (w1 - w0) }')
	cpu_call=$(awk -v a="$t0" -v b="$t1" -v n="$suc" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.0f", 1e6 * (b - a) / hz / n; else print "-" }')
	echo "$name $test $rate $res $cpu $cpu_call" | tee -a "$OUT/steps.txt"
	log "$name $test r=$rate: calls=$out ok=$suc failed=$fail retrans=$4 achieved=$5/s p50=$6ms p99=$7ms server-cpu=$cpu% (${cpu_call}us/call) rss=$(server_rss_mb)MB"
	# pass: < 1 % of the offered calls failed or never finished
	awk -v c="$count" -v s="$suc" 'BEGIN { exit !((c - s) * 100 < c) }'
}

# ramp NAME TEST RATES... : steps up, then one step between last pass and first fail
ramp() {
	local name=$1 test=$2 last_ok=0 first_fail=0 r
	shift 2
	for r in "$@"; do
		if step "$name" "$test" "$r"; then
			last_ok=$r
		else
			first_fail=$r
			break
		fi
		sleep 2
	done
	if [ "$first_fail" -gt 0 ] && [ "$last_ok" -gt 0 ] && [ $((first_fail - last_ok)) -gt $((last_ok / 10)) ]; then
		sleep 2
		r=$(((last_ok + first_fail) / 2 / 50 * 50))
		step "$name" "$test" "$r" && last_ok=$r
	fi
	echo "$name $test best $last_ok $first_fail" >>"$OUT/steps.txt"
}

register_uas() { # name: register bob from the UAS port, then start the UAS there
	local name=$1 addr
	addr=$(server_addr "$name")
	printf 'SEQUENTIAL\nbob;%s\n' "$(server_domain "$name")" >"$SCRATCH/bob.csv"
	mkdir -p "$OUT/$name-uas"
	(cd "$OUT/$name-uas" && "${PIN_SIPP[@]}" sipp -sf "$HERE/register_unique.xml" -inf "$SCRATCH/bob.csv" \
		-i "$UAS_ADDR" -p 5070 -m 1 -nostdin -timeout 10 -trace_msg -message_file register.log "$addr:5060" \
		>register.out 2>&1) || die "registering the UAS at $name failed: see $OUT/$name-uas/register.log"
	local line
	line=$(cd "$OUT/$name-uas" && "${PIN_SIPP[@]}" sipp -sf "$HERE/uas_rr.xml" -i "$UAS_ADDR" -p 5070 -bg -nostdin -buff_size "$SIPP_BUFF" \
		-trace_err -error_file uas-errors.log 2>&1 | grep -o 'PID=\[[0-9]*\]' || true)
	UAS_PID=$(echo "$line" | tr -dc 0-9)
	[ -n "$UAS_PID" ] || die "sipp UAS did not start"
	wait_udp "$UAS_ADDR:5070" || die "sipp UAS does not listen"
}

stop_uas() {
	[ -n "$UAS_PID" ] || return 0
	kill "$UAS_PID" 2>/dev/null || true
	for _ in $(seq 30); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
	UAS_PID=""
}

# ---- run -----------------------------------------------------------------

log "results in $OUT (step ${STEP_SECONDS}s; server on core 0, sipp on core 1, nice $NICE)"
: >"$OUT/steps.txt"
for name in $SERVERS; do
	PERF_STEP=""
	[ "${PERF:-0}" = 1 ] && [ "$name" = p2psip ] && PERF_STEP=$(echo $REG_RATES | awk '{print $2}')
	start_server "$name" register
	ramp "$name" register $REG_RATES
	echo "$name register rss_mb $(server_rss_mb)" >>"$OUT/steps.txt"
	stop_server
	sleep 1

	[ "${PERF:-0}" = 1 ] && [ "$name" = p2psip ] && PERF_STEP=$(echo $INV_RATES | awk '{print $3}')
	start_server "$name" invite
	register_uas "$name"
	ramp "$name" invite $INV_RATES
	echo "$name invite rss_mb $(server_rss_mb)" >>"$OUT/steps.txt"
	stop_uas
	stop_server
	sleep 1
done

# ---- report --------------------------------------------------------------

report() {
	awk '
		$3 == "best" { best[$1 " " $2] = $4; fail[$1 " " $2] = $5; next }
		$3 == "rss_mb" { next }
		{ key = $1 " " $2 " " $3; p50[key] = $9; p99[key] = $10; cpu[key] = $12; ach[key] = $8 }
		END {
			for (t = 1; t <= 2; t++) {
				test = (t == 1) ? "register" : "invite"
				p = best["p2psip " test]; k = best["kamailio " test]
				printf "%-9s | %-26s | %-26s | %s\n", test, "p2psip", "kamailio", "ratio p2psip/kamailio"
				pf = fail["p2psip " test]; kf = fail["kamailio " test]
				printf "%-9s | %-26s | %-26s | %s\n", "max rate", \
					p "/s" (pf ? " (fails at " pf ")" : " (not reached)"), \
					k "/s" (kf ? " (fails at " kf ")" : " (not reached)"), \
					(k > 0) ? sprintf("%.2fx", p / k) : "-"
				pk = "p2psip " test " " p; kk = "kamailio " test " " k
				printf "%-9s | %-26s | %-26s | %s\n", "p99 @max", p99[pk] " ms", p99[kk] " ms", \
					(p99[kk] > 0) ? sprintf("%.2fx", p99[pk] / p99[kk]) : "-"
				# common rate: the highest rate both passed
				c = (p < k) ? p : k
				pc = "p2psip " test " " c; kc = "kamailio " test " " c
				printf "%-9s | %-26s | %-26s | %s\n", "@" c "/s", \
					"p50 " p50[pc] " p99 " p99[pc] " ms", "p50 " p50[kc] " p99 " p99[kc] " ms", \
					(p99[kc] > 0) ? sprintf("p99 %.2fx", p99[pc] / p99[kc]) : "-"
				printf "%-9s | %-26s | %-26s | %s\n", "cpu/call", cpu[pc] " us", cpu[kc] " us", \
					(cpu[kc] > 0) ? sprintf("%.2fx", cpu[pc] / cpu[kc]) : "-"
				print ""
			}
		}' "$OUT/steps.txt"
}

echo
echo "== steps (name test rate calls ok failed retrans achieved/s p50ms p99ms server-cpu% cpu-us/call)"
grep -v -e ' best ' -e ' rss_mb ' "$OUT/steps.txt"
echo
if [[ " $SERVERS " == *" p2psip "* ]] && [[ " $SERVERS " == *" kamailio "* ]]; then
	report
fi
for name in $SERVERS; do
	for test in register invite; do
		f=$OUT/$name-$test.stderr
		[ -s "$f" ] && echo "$name $test stderr: $(wc -l <"$f") lines, e.g.: $(grep -v '^ *$' "$f" | head -3 | cut -c1-300)"
	done
done
echo "logs, sipp CSVs and error logs: $OUT"
