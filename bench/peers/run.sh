#!/usr/bin/env bash
# Peer-to-peer SIP benchmark (issue 10): calls through two peers over the old
# socket path (commit 6d2ea03: peer 2's Path is its IP:port, SIP between the
# peers over plain TCP) and over the stream path (SIP over libp2p streams of
# the overlay connection, since b00f6c3), in one run, on the same cores.
#
#   bench/peers/run.sh          # from anywhere; builds both binaries into a temp dir
#
# For each path: peer 2 starts, peer 1 joins it (--join https://<peer 2>/), a
# sipp UAS registers as bob@p2psip.local at peer 2 and another as
# carol@p2psip.local at peer 1, then
#   ramp     a sipp UAC sends INVITE sip:bob@<peer 1> to peer 1
#            (UAC -> peer 1 -> peer 2 -> UAS; INVITE/100/180/200/ACK/BYE/200,
#            zero-length calls) at stepped rates, STEP_SECONDS per step, and
#            stops at the first step with > 0.5 % of the offered calls failed or
#            unfinished or with sipp's p99 response time > 500 ms (then tries once
#            halfway between the last pass and the first fail);
#   latency  at half of the path's maximum rate, LAT_SECONDS each, in the order
#            a b b a: (a) UAC -> peer 1 -> carol (no peer hop) and
#            (b) UAC -> peer 1 -> peer 2 -> bob (one peer hop). Response times
#            INVITE -> 180 and INVITE -> 200 come from kernel packet timestamps
#            at the UAC's socket (bench/peers/siprtt: sipp's own clock ticks in
#            4 ms steps here); added p99 per hop = p99(b) - p99(a).
# Every ramp step and latency run also logs how busy cores 0 and 1 were
# (/proc/stat, also in cores.txt): a run on a saturated core measures the
# queue for that core as much as the peers.
# Ramp: both peers on core 0 (GOMAXPROCS follows the mask: 1 each), sipp (UAC,
# both UASes) and siprtt on core 1, nice -10, the same for both binaries;
# latency runs: see LAT_SPLIT, LAT_UAC_NICE, LAT_SETTLE and LAT_RT.
#
# Environment (all optional):
#   PATHS="udp stream kamailio"  which paths, in order: udp = the old socket path (SIP
#                             between the peers over TCP), stream = SIP over libp2p
#                             streams, peer 1 joined by --join (its overlay connection
#                             is then the join's WebSocket over TLS to peer 2's HTTPS
#                             port), stream-tcp = the same binary, peer 1 joined by
#                             --bootstrap <peer 2's libp2p TCP address> instead;
#                             kamailio = the reference: two Kamailio instances
#                             (kamailio-peer.cfg) as peer 1 and peer 2, UDP between them
#   KAM_CHILDREN=1            UDP worker processes of each Kamailio instance (1: one
#                             core each, as the Go peer's GOMAXPROCS; 2 had a longer tail)
#   KAM_LAT_RATE=             latency rate of the kamailio path (default: the stream
#                             path's half rate when it ran before, else its own half),
#                             so that both hops are measured at the same offered load
#   OLD_REV=6d2ea03           commit of the old path
#   NEW_REV=HEAD              commit of the stream path; "worktree" builds the
#                             checkout as it is, uncommitted edits included
#   STEP_SECONDS=15           load per ramp step
#   RATES="250 500 ..."       offered calls/s of the ramp, ascending
#   MAX_FAIL_PCT=0.5          a step fails above this share of failed or unfinished calls
#   MAX_P99_MS=500            ... or above this sipp p99 (INVITE -> 200)
#   LAT_SECONDS=15            load per latency run
#   LAT_ROUNDS=2              latency rounds (a b b a each); the table shows the
#                             median over the runs of each kind
#   LAT_RATE=                 latency rate for every path (default: half each path's max)
#   LAT_SPLIT=auto            6 on a machine of 3 or more cores, else 1
#                             1: during the latency runs (not the ramp): peer 1 alone on
#                             core 0, peer 2 moves to core 1 beside sipp and siprtt, so
#                             one peer's GC does not run on the other's core; 0 keeps
#                             the ramp's layout; 2 puts sipp and siprtt beside peer 1 on
#                             core 0 and peer 2 alone on core 1, so that (a) and (b) share
#                             the same co-location and differ only by peer 2 on a core of
#                             its own; 3 puts the UAC and siprtt beside peer 1 on core 0
#                             and the UASes beside peer 2 on core 1; 4 puts both UASes
#                             beside peer 1 on core 0 and peer 2 beside the UAC and
#                             siprtt (which yield: LAT_UAC_NICE) on core 1, so that a
#                             UAS shares its core with a peer in (a) and (b) alike;
#                             6 (3+ cores) puts peer 1 alone on core 0, peer 2 alone on
#                             core 1, and sipp and siprtt on cores 2 and up, so that
#                             (b) measures peer 2's work and not its wait behind a sipp
#                             UAS for core 1 (on 2 cores it is layout 1)
#   LAT_RT=0                  1 (root only): peers SCHED_RR 10, sipp and siprtt SCHED_RR
#                             20 during the latency runs. Off by default: a peer is never
#                             deployed real-time, and under SCHED_RR a Go peer's threads
#                             wait out each other's 100 ms round-robin slice (perf sched:
#                             a peer thread runnable for 53-103 ms while the same peer's
#                             other thread ran, during a GC), which turned 2-20 ms GC
#                             stalls into the 100-200 ms ones of the earlier runs
#                             (FINDINGS-p99.md).
#   OUT=dir                   logs and CSVs (default: a new /tmp dir, kept)
#   NICE=-10                  nice level of peers and sipp (default -10 as root, else 0)
#   LAT_UAC_NICE=19           nice level of the UAC sipp and siprtt during the latency
#                             runs (the UASes and the peers keep NICE), so that the
#                             load generator yields its core to the path it measures
#                             (siprtt's kernel timestamps do not depend on when it
#                             runs); $NICE for the method before 2026-12-06; idle
#                             runs them SCHED_IDLE
#   LAT_UAS_NICE=$NICE        nice level of the two sipp UASes during the latency runs
#   LAT_SETTLE=40             seconds between the ramp (which ends overloaded) and the
#                             latency runs: the transactions of the overload end (UDP
#                             ones 32 s after their last message, RFC 3261 Timer J)
#                             and the heap shrinks back before the steady state is
#                             measured; 0: start at once, as before 2026-12-06
#   LAT_HOOK='cmd'            run (eval) before the latency runs, with $P1_PID $P2_PID
#                             $BOB_PID $CAROL_PID set (for diagnosis)
#   SIPP_BUFF=4194304         sipp's socket buffers (-buff_size)
#   PERF=1                    perf record -g both peers during the first (b) latency run
#   PERF=sched                perf sched record (whole machine) during that run instead
#   PEER_ENV="GODEBUG=gctrace=1"  extra environment of the peers (for diagnosis)
#   SPLIT=1                   also run bench/peers/hopsplit in each latency run: the
#                             peers' part of INVITE -> 200 without the UAS's own time,
#                             split into the way in and out (for diagnosis: it takes
#                             every UDP packet on lo, so it costs more than siprtt)
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }
for tool in sipp taskset ss awk curl go git tar pgrep; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; install it first (sipp: apt-get install sip-tester). This script installs nothing."
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (peers on core 0, sipp on core 1)"
case "${PERF:-0}" in
0) ;;
1 | sched) command -v perf >/dev/null 2>&1 || die "PERF=$PERF needs perf (apt-get install linux-perf)" ;;
*) die "PERF must be 0, 1 or sched" ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SIPDIR=$REPO/bench/sip
PATHS=${PATHS:-"udp stream kamailio"}
if [[ " $PATHS " == *" kamailio "* ]]; then
	command -v kamailio >/dev/null 2>&1 || die "PATHS has kamailio (the reference hop, on by default): install it (apt-get install kamailio) or leave it out of PATHS"
fi
OLD_REV=${OLD_REV:-6d2ea03}
NEW_REV=${NEW_REV:-HEAD}
STEP_SECONDS=${STEP_SECONDS:-15}
RATES=${RATES:-"250 500 750 1000 1250 1500 2000 2500 3000 4000"}
MAX_FAIL_PCT=${MAX_FAIL_PCT:-0.5}
MAX_P99_MS=${MAX_P99_MS:-500}
LAT_SECONDS=${LAT_SECONDS:-15}
LAT_ROUNDS=${LAT_ROUNDS:-2}
OUT=${OUT:-$(mktemp -d /tmp/peerbench.XXXXXX)}
mkdir -p "$OUT"
CLK_TCK=$(getconf CLK_TCK)
if [ "$(id -u)" = 0 ]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
LAT_SPLIT=${LAT_SPLIT:-auto}
if [ "$LAT_SPLIT" = auto ]; then
	if [ "$(nproc)" -ge 3 ]; then LAT_SPLIT=6; else LAT_SPLIT=1; fi
fi
case "$LAT_SPLIT" in 0 | 1 | 2 | 3 | 4 | 6) ;; *) die "LAT_SPLIT must be auto, 0, 1, 2, 3, 4 or 6" ;; esac
# LOAD_CORES: where layout 6 puts sipp and siprtt in the latency runs.
if [ "$(nproc)" -ge 3 ]; then LOAD_CORES=2-$(($(nproc) - 1)); else LOAD_CORES=1; fi
LAT_RT=${LAT_RT:-0}
LAT_UAC_NICE=${LAT_UAC_NICE:-19}
LAT_UAS_NICE=${LAT_UAS_NICE:-$NICE}
LAT_SETTLE=${LAT_SETTLE:-40}
[ "$LAT_RT" = 1 ] && [ "$(id -u)" != 0 ] && die "LAT_RT=1 needs root (chrt)"
RT=() # chrt prefix of sipp and siprtt (set during the latency runs)
PIN_PEER=(nice -n "$NICE" taskset -c 0)
PIN_SIPP=(nice -n "$NICE" taskset -c 1)
SIPP_BUFF=${SIPP_BUFF:-4194304}
DOMAIN=p2psip.local

# Addresses: all loopback, away from the usual 127.0.0.1 and bench/sip's .2x.
P2_ADDR=127.0.0.52  # peer 2 (bob's home), SIP :5060
P1_ADDR=127.0.0.51  # peer 1 (the UAC's peer, carol's home), SIP :5060
BOB_ADDR=127.0.0.53 # sipp UAS registered at peer 2, :5070
CAROL_ADDR=127.0.0.54 # sipp UAS registered at peer 1, :5070
UAC_ADDR=127.0.0.55 # sipp UAC, :5080

KAM_CHILDREN=${KAM_CHILDREN:-1}
STREAM_HALF="" CORES="" P1_PID="" P2_PID="" BOB_PID="" CAROL_PID="" RTT_PID="" SPLIT_PID="" PERF_PID="" UAS_PID="" RES="" MAX=0 CUR=""
P1_URL="" P2_URL=""
SCRATCH=$(mktemp -d /tmp/peerbench-run.XXXXXX)
cleanup() {
	set +e
	[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null
	[ -n "$RTT_PID" ] && kill "$RTT_PID" 2>/dev/null
	[ -n "$SPLIT_PID" ] && kill "$SPLIT_PID" 2>/dev/null
	stop_uases
	stop_peers
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- binaries ------------------------------------------------------------

build_rev() { # rev dir out
	local rev=$1 dir=$2 out=$3
	if [ "$rev" = worktree ]; then
		(cd "$REPO" && go build -o "$out" ./server)
		return
	fi
	mkdir -p "$dir"
	git -C "$REPO" archive "$rev" | tar -x -C "$dir"
	(cd "$dir" && go build -o "$out" ./server)
}

log "results in $OUT; load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
log "building the udp path from $OLD_REV ($(git -C "$REPO" log -1 --format='%h %s' "$OLD_REV"))"
build_rev "$OLD_REV" "$SCRATCH/old" "$SCRATCH/p2psip-udp"
if [ "$NEW_REV" = worktree ]; then
	log "building the stream path from the work tree ($(git -C "$REPO" log -1 --format='%h' HEAD) + uncommitted edits)"
else
	log "building the stream path from $NEW_REV ($(git -C "$REPO" log -1 --format='%h %s' "$NEW_REV"))"
fi
build_rev "$NEW_REV" "$SCRATCH/new" "$SCRATCH/p2psip-stream"
log "building bench/peers/siprtt"
(cd "$REPO" && go build -o "$SCRATCH/siprtt" ./bench/peers/siprtt)
if [ "${SPLIT:-0}" = 1 ]; then
	(cd "$REPO" && go build -o "$SCRATCH/hopsplit" ./bench/peers/hopsplit)
fi

# ---- peers ---------------------------------------------------------------

# tree PID: PID and all its descendants, one per line. A Kamailio "peer" is
# a process tree (its SIP workers are forked children), a p2psip peer one
# process: pinning, priorities and CPU accounting go over the whole tree.
tree() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null || true); do tree "$c"; done
}

# pin CORES PID: move every thread of every process of PID's tree.
pin() {
	local p
	for p in $(tree "$2"); do
		taskset -a -p -c "$1" "$p" >/dev/null || die "taskset -a -p -c $1 $p failed"
	done
}

wait_udp() { # addr:port
	for _ in $(seq 100); do
		ss -Hlun "src $1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

start_peer() { # bin name addr [join flag] [join value] -> sets LAST_PID, LAST_URL, LAST_ID
	local bin=$1 name=$2 addr=$3 dir args
	dir=$(mktemp -d "$SCRATCH/$name.XXXXXX")
	args=(--data "$dir" --https "$addr:0" --p2p-host "$addr" --sip "$addr:5060" --sips "$addr:0"
		--mdns=false --log-level warn --registrations-per-source 0)
	[ $# -ge 5 ] && args+=("$4" "$5")
	# shellcheck disable=SC2086
	env ${PEER_ENV:-} "${PIN_PEER[@]}" "$bin" "${args[@]}" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
	LAST_PID=$!
	date +%s.%N >"$OUT/$name.started" # what GODEBUG=gctrace=1's @<s> counts from, within ms
	for _ in $(seq 150); do
		grep -q '^p2psip peer ready' "$OUT/$name.stdout" 2>/dev/null && grep -q '^  join:' "$OUT/$name.stdout" && break
		kill -0 "$LAST_PID" 2>/dev/null || die "$name exited: $(tail -5 "$OUT/$name.stderr")"
		sleep 0.1
	done
	grep -q '^p2psip peer ready' "$OUT/$name.stdout" || die "$name not ready after 15 s"
	LAST_URL=https://$(awk '$1 == "https:" {print $2; exit}' "$OUT/$name.stdout")
	LAST_ID=$(awk '$1 == "node" && $2 == "id:" {print $3; exit}' "$OUT/$name.stdout")
	wait_udp "$addr:5060" || die "$name does not listen on $addr:5060"
}

# stream_transports url: the kinds of connection the peer's SIP streams ride
# (/api/overlay's sip_streams.transports, e.g. {"tcp":2}); "-" on the old path.
stream_transports() {
	local t
	[ -n "$1" ] && t=$(curl -sk --max-time 3 "$1/api/overlay" 2>/dev/null | tr -d ' \n' | grep -o '"transports":{[^}]*}' | cut -d: -f2- || true)
	echo "${t:--}"
}

sees() { # url node-id: does the peer at url list node-id as an overlay peer?
	curl -sk --max-time 3 "$1/api/overlay" 2>/dev/null | grep -q "\"$2\""
}

# start_kamailio name addr other -> sets LAST_PID: one reference instance
# (kamailio-peer.cfg) on addr:5060 that relays users it does not know to other.
start_kamailio() {
	local name=$1 addr=$2 other=$3 dir
	dir=$(mktemp -d "$SCRATCH/$name.XXXXXX")
	sed -e "s|@RUNDIR@|$dir|g" -e "s|@ADDR@|$addr|g" -e "s|@OTHER@|$other|g" -e "s|@CHILDREN@|$KAM_CHILDREN|g" "$HERE/kamailio-peer.cfg" >"$dir/kamailio.cfg"
	kamailio -c -f "$dir/kamailio.cfg" >"$dir/check.log" 2>&1 || die "kamailio config check failed: $(tail -5 "$dir/check.log")"
	"${PIN_PEER[@]}" kamailio -f "$dir/kamailio.cfg" -DD -E -P "$dir/kamailio.pid" -Y "$dir" -m "${KAM_SHM_MB:-256}" -M 8 \
		>"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
	LAST_PID=$!
	date +%s.%N >"$OUT/$name.started" # as start_peer's, for gcs_during (which finds no gctrace here)
	wait_udp "$addr:5060" || die "$name does not listen on $addr:5060: $(tail -5 "$OUT/$name.stderr")"
}

start_peers() { # path
	local path=$1 bin p2id p1id tcp
	if [ "$path" = kamailio ]; then
		start_kamailio "$path-peer2" "$P2_ADDR" "$P1_ADDR"
		P2_PID=$LAST_PID P2_URL=""
		start_kamailio "$path-peer1" "$P1_ADDR" "$P2_ADDR"
		P1_PID=$LAST_PID P1_URL=""
		sleep 0.5 # the workers fork after the socket is bound
		log "$path: peer 2 Kamailio (pids $(tree "$P2_PID" | paste -sd' ')), peer 1 Kamailio (pids $(tree "$P1_PID" | paste -sd' '))"
		return
	fi
	bin=$SCRATCH/p2psip-${path%-tcp}
	start_peer "$bin" "$path-peer2" "$P2_ADDR"
	P2_PID=$LAST_PID P2_URL=$LAST_URL p2id=$LAST_ID
	if [ "$path" = stream-tcp ]; then
		tcp=$(awk '$1 == "p2p:" && $2 ~ /\/tcp\/[0-9]+\/p2p\// {print $2; exit}' "$OUT/$path-peer2.stdout")
		[ -n "$tcp" ] || die "$path: peer 2 shows no libp2p TCP address"
		start_peer "$bin" "$path-peer1" "$P1_ADDR" --bootstrap "$tcp"
	else
		start_peer "$bin" "$path-peer1" "$P1_ADDR" --join "$P2_URL/"
	fi
	P1_PID=$LAST_PID P1_URL=$LAST_URL p1id=$LAST_ID
	for _ in $(seq 60); do
		sees "$P1_URL" "$p2id" && sees "$P2_URL" "$p1id" && break
		sleep 0.5
	done
	sees "$P1_URL" "$p2id" && sees "$P2_URL" "$p1id" || die "$path: the peers do not see each other after 30 s"
	log "$path: peer 2 $P2_URL (pid $P2_PID), peer 1 $P1_URL (pid $P1_PID) joined it"
}

stop_peers() {
	local p
	for p in $P1_PID $P2_PID; do kill "$p" 2>/dev/null || true; done
	for p in $P1_PID $P2_PID; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	P1_PID="" P2_PID=""
}

# CPU ticks (user+system) of both peers.
peer_ticks() {
	local p t=0 v
	for p in $( (tree "$P1_PID"; tree "$P2_PID") 2>/dev/null); do
		v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}

# ---- sipp ----------------------------------------------------------------

start_uas() { # name addr peer-addr -> sets UAS_PID
	local name=$1 addr=$2 peer=$3 line pid
	printf 'SEQUENTIAL\n%s;%s\n' "$name" "$DOMAIN" >"$SCRATCH/$name.csv"
	mkdir -p "$OUT/$CUR-uas-$name"
	(cd "$OUT/$CUR-uas-$name" && "${PIN_SIPP[@]}" sipp -sf "$SIPDIR/register_unique.xml" -inf "$SCRATCH/$name.csv" \
		-i "$addr" -p 5070 -m 1 -nostdin -timeout 10 -trace_msg -message_file register.log "$peer:5060" \
		>register.out 2>&1) || die "registering $name at $peer failed: see $OUT/$CUR-uas-$name/register.log"
	line=$(cd "$OUT/$CUR-uas-$name" && "${PIN_SIPP[@]}" sipp -sf "$SIPDIR/uas_rr.xml" -i "$addr" -p 5070 -bg -nostdin \
		-buff_size "$SIPP_BUFF" -trace_err -error_file uas-errors.log 2>&1 | grep -o 'PID=\[[0-9]*\]' || true)
	pid=$(echo "$line" | tr -dc 0-9)
	[ -n "$pid" ] || die "sipp UAS $name did not start"
	wait_udp "$addr:5070" || die "sipp UAS $name does not listen"
	UAS_PID=$pid
}

stop_uases() {
	local p
	for p in $BOB_PID $CAROL_PID; do
		kill "$p" 2>/dev/null || true
		for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	BOB_PID="" CAROL_PID=""
}

# summarize STAT_CSV RTT_CSV -> "outgoing success failed retrans achieved p50 p99" (sipp's ms)
summarize() {
	local stat=$1 rtt=$2 head
	head=$(awk -F';' 'NR==1 {
		for (i = 1; i <= NF; i++) c[$i] = i
		print c["OutgoingCall(C)"], c["SuccessfulCall(C)"], c["FailedCall(C)"], c["Retransmissions(C)"], c["CallRate(P)"]
	}' "$stat")
	# shellcheck disable=SC2086
	set -- $head
	local stats pct
	stats=$(awk -F';' -v o="$1" -v s="$2" -v f="$3" -v r="$4" -v cr="$5" '
		NR > 1 { out[NR] = $o; suc = $s; fail = $f; re = $r; rate[NR] = $cr; n = NR }
		END {
			total = out[n]; k = 0; sum = 0
			for (i = 2; i <= n; i++) if (out[i] < total && out[i] > 0) { sum += rate[i]; k++ }
			printf "%d %d %d %d %.0f", total, suc, fail, re, (k > 0) ? sum / k : 0
		}' "$stat")
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

# uac TAG USER RATE SECONDS [siprtt]: one sipp UAC run calling USER through
# peer 1; with siprtt, the kernel-timestamp response times too. Sets RES to
# "outgoing success failed retrans achieved p50 p99 cpu_us_per_call
# [calls with180 with200 p50_180 p99_180 p50_200 p99_200 max_200 drops]"
# (sipp's times in ms, siprtt's in us).
# core_ticks: the time now and the idle jiffies of cores 0 and 1
# (/proc/stat idle + iowait), as one line.
core_ticks() {
	echo "$(date +%s.%N) $(awk '$1 == "cpu0" || $1 == "cpu1" {printf "%d ", $5 + $6}' /proc/stat)"
}

# core_busy "T0" "T1": how busy cores 0 and 1 were between two core_ticks,
# e.g. "core0=60% core1=94%": a latency run on a saturated core measures
# the queue for that core as much as the peers. Busy is wall time minus
# idle time: idle time is measured exactly, while the busy jiffies of
# /proc/stat are tick samples that miss much of a core's work when it
# goes idle and wakes thousands of times a second (here they summed with
# idle to 70 % of the wall time).
core_busy() {
	awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		wall = (y[1] - x[1]) * hz
		for (i = 0; i < 2; i++) {
			pct = 0
			if (wall > 0) pct = 100 * (1 - (y[i + 2] - x[i + 2]) / wall)
			if (pct < 0) pct = 0
			printf "core%d=%.0f%%%s", i, pct, (i == 0 ? " " : "")
		}
	}'
}

uac() {
	local tag=$1 user=$2 rate=$3 secs=$4 rtt=${5:-} d count t0 t1 c0 res r=""
	count=$((rate * secs))
	d=$OUT/$tag
	rm -rf "$d"
	mkdir -p "$d"
	if [ -n "$rtt" ]; then
		"${RT[@]}" "${PIN_SIPP[@]}" "$SCRATCH/siprtt" -ip "$UAC_ADDR" -port 5080 -csv "$d/calls.csv" >"$d/siprtt.out" 2>"$d/siprtt.err" &
		RTT_PID=$!
		for _ in $(seq 50); do grep -q capturing "$d/siprtt.err" 2>/dev/null && break; sleep 0.1; done
		if [ "${SPLIT:-0}" = 1 ]; then
			"${RT[@]}" "${PIN_SIPP[@]}" "$SCRATCH/hopsplit" -uac "$UAC_ADDR:5080" -uas "$BOB_ADDR:5070,$CAROL_ADDR:5070" \
				-csv "$d/split.csv" >"$d/hopsplit.out" 2>"$d/hopsplit.err" &
			SPLIT_PID=$!
			for _ in $(seq 50); do grep -q capturing "$d/hopsplit.err" 2>/dev/null && break; sleep 0.1; done
		fi
	fi
	if [ "${PERF_NOW:-}" = 1 ]; then
		perf record -g -o "$OUT/perf-$tag.data" -p "$(tree "$P1_PID" | paste -sd,),$(tree "$P2_PID" | paste -sd,)" -- sleep "$secs" >"$OUT/perf-$tag.log" 2>&1 &
		PERF_PID=$!
	elif [ "${PERF_NOW:-}" = sched ]; then
		# whole machine: a thread's wait for the CPU shows only with what ran instead
		perf sched record -o "$OUT/perf-sched-$tag.data" -- sleep "$secs" >"$OUT/perf-sched-$tag.log" 2>&1 &
		PERF_PID=$!
	fi
	t0=$(peer_ticks)
	c0=$(core_ticks)
	(cd "$d" && "${RT[@]}" "${PIN_SIPP[@]}" sipp -sf "$SIPDIR/uac_rr.xml" -s "$user" -d 0 -i "$UAC_ADDR" -p 5080 "$P1_ADDR:5060" \
		-r "$rate" -rp 1000 -m "$count" -nostdin -buff_size "$SIPP_BUFF" -recv_timeout 5000 -timeout $((secs + 15)) \
		-trace_stat -fd 1 -stf stat.csv -trace_rtt -trace_err -error_file errors.log >sipp.out 2>&1) || true
	t1=$(peer_ticks)
	CORES=$(core_busy "$c0" "$(core_ticks)")
	echo "$tag $CORES" >>"$OUT/cores.txt"
	if [ -n "$PERF_PID" ]; then wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""; fi
	if [ -n "$RTT_PID" ]; then
		kill -INT "$RTT_PID" 2>/dev/null || true
		wait "$RTT_PID" 2>/dev/null || true
		RTT_PID=""
		r=$(tr ' ' '\n' <"$d/siprtt.out" | awk -F= 'NF == 2 {printf "%s ", $2}')
		[ -n "$r" ] || r="- - - - - - - - - "
	fi
	if [ -n "$SPLIT_PID" ]; then
		kill -INT "$SPLIT_PID" 2>/dev/null || true
		wait "$SPLIT_PID" 2>/dev/null || true
		SPLIT_PID=""
	fi
	[ -s "$d/stat.csv" ] || die "sipp wrote no statistics for $tag: $(tail -5 "$d/sipp.out")"
	res=$(summarize "$d/stat.csv" "$(ls "$d"/*_rtt.csv 2>/dev/null | head -1 || true)")
	# shellcheck disable=SC2086
	set -- $res
	local cpu_call
	cpu_call=$(awk -v a="$t0" -v b="$t1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.0f", 1e6 * (b - a) / hz / n; else print "-" }')
	RES="$res $cpu_call $r"
}

# step PATH RATE -> one ramp step; returns 0 if it passed
step() {
	local path=$1 rate=$2 res count
	count=$((rate * STEP_SECONDS))
	uac "$path-ramp-$rate" bob "$rate" "$STEP_SECONDS"
	res=$RES
	echo "$path ramp $rate $res" >>"$OUT/steps.txt"
	# shellcheck disable=SC2086
	set -- $res
	log "$path ramp r=$rate: calls=$1 ok=$2 failed=$3 retrans=$4 achieved=$5/s sipp p50=$6ms p99=$7ms peers' cpu=${8}us/call $CORES load=$(cut -d' ' -f1 /proc/loadavg)"
	awk -v c="$count" -v s="$2" -v p99="$7" -v fp="$MAX_FAIL_PCT" -v mp="$MAX_P99_MS" \
		'BEGIN { exit !((c - s) * 100 <= c * fp && p99 != "-" && p99 + 0 <= mp) }'
}

ramp() { # path -> sets MAX
	local path=$1 last_ok=0 first_fail=0 r
	for r in $RATES; do
		if step "$path" "$r"; then
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
		step "$path" "$r" && last_ok=$r
	fi
	MAX=$last_ok
	echo "$path best $last_ok $first_fail" >>"$OUT/steps.txt"
}

# gcs_during PATH T0 SECS: GC cycles of either peer that started within SECS of
# unix time T0, as "peer@offset_s/mark_ms" (needs PEER_ENV=GODEBUG=gctrace=1).
gcs_during() {
	local path=$1 t0=$2 secs=$3 n
	for n in 1 2; do
		[ -s "$OUT/$path-peer$n.stderr" ] || continue
		awk -v s="$(cat "$OUT/$path-peer$n.started")" -v t0="$t0" -v secs="$secs" -v n="$n" '
			$1 == "gc" && $3 ~ /^@/ {
				t = s + substr($3, 2, length($3) - 2) - t0
				split($5, w, "+")
				if (t >= 0 && t <= secs) printf "p%d@%.1f/%.0f ", n, t, w[2]
			}' "$OUT/$path-peer$n.stderr"
	done
}

latency() { # path rate: a b b a, LAT_ROUNDS times
	local path=$1 rate=$2 i=0 kind user res p
	case "$LAT_SPLIT" in
	1) pin 1 "$P2_PID" ;;
	2 | 4) # 2 moves the UAC and siprtt to core 0 as well (below)
		pin 1 "$P2_PID"
		for p in $BOB_PID $CAROL_PID; do taskset -a -p -c 0 "$p" >/dev/null || die "taskset -a -p -c 0 $p failed"; done
		;;
	3) pin 1 "$P2_PID" ;;
	6)
		pin 1 "$P2_PID"
		for p in $BOB_PID $CAROL_PID; do taskset -a -p -c "$LOAD_CORES" "$p" >/dev/null || die "taskset -a -p -c $LOAD_CORES $p failed"; done
		;;
	esac
	[ -n "${LAT_HOOK:-}" ] && { eval "$LAT_HOOK" || die "LAT_HOOK failed"; }
	for p in $BOB_PID $CAROL_PID; do renice -n "$LAT_UAS_NICE" -p "$p" >/dev/null || die "renice $p failed"; done
	local core=1 # of the UAC and siprtt
	case "$LAT_SPLIT" in 2 | 3) core=0 ;; 6) core=$LOAD_CORES ;; esac
	if [ "$LAT_UAC_NICE" = idle ]; then
		PIN_SIPP=(chrt -i 0 taskset -c "$core")
	else
		PIN_SIPP=(nice -n "$LAT_UAC_NICE" taskset -c "$core")
	fi
	if [ "$LAT_RT" = 1 ]; then
		for p in $(tree "$P1_PID") $(tree "$P2_PID"); do chrt -a -r -p 10 "$p" >/dev/null || die "chrt -a -r -p 10 $p failed"; done
		for p in $BOB_PID $CAROL_PID; do chrt -a -r -p 20 "$p" >/dev/null || die "chrt -a -r -p 20 $p failed"; done
		RT=(chrt -r 20)
	fi
	for kind in $(for _ in $(seq "$LAT_ROUNDS"); do printf 'a b b a '; done); do
		i=$((i + 1))
		if [ "$kind" = a ]; then user=carol; else user=bob; fi
		PERF_NOW=""
		[ "${PERF:-0}" != 0 ] && [ "$i" = 2 ] && PERF_NOW=$PERF
		sleep 2
		uac "$path-lat$i-$kind-$rate" "$user" "$rate" "$LAT_SECONDS" rtt
		res=$RES
		echo "$path lat $kind $rate $res" >>"$OUT/steps.txt"
		# shellcheck disable=SC2086
		set -- $res
		log "$path latency ${RT[*]:+(${RT[*]}) }($kind: $([ "$kind" = a ] && echo 'peer 1 only' || echo 'peer 1 -> peer 2')) r=$rate: calls=$1 ok=$2 failed=$3 INVITE->180 p50=${12}us p99=${13}us INVITE->200 p50=${14}us p99=${15}us (sipp p99 ${7}ms, capture drops ${17}) $CORES load=$(cut -d' ' -f1 /proc/loadavg)$([ "${18:-}" != "" ] && g=$(gcs_during "$path" "${18}" "$LAT_SECONDS") && [ -n "$g" ] && echo " GCs (peer@s/mark ms): $g")$([ -s "$OUT/$path-lat$i-$kind-$rate/hopsplit.out" ] && echo " split (us): $(cat "$OUT/$path-lat$i-$kind-$rate/hopsplit.out")")"
	done
	PIN_SIPP=(nice -n "$NICE" taskset -c 1)
}

# ---- run -----------------------------------------------------------------

log "step ${STEP_SECONDS}s, latency runs ${LAT_SECONDS}s x 4 x $LAT_ROUNDS; ramp: peers on core 0, sipp on core 1, nice $NICE; latency runs: $(case "$LAT_SPLIT" in 1) echo "peer 1 on core 0, peer 2 and sipp on core 1" ;; 2) echo "peer 1 and sipp on core 0, peer 2 alone on core 1" ;; 3) echo "peer 1 and the UAC on core 0, peer 2 and the UASes on core 1" ;; 4) echo "peer 1 and the UASes on core 0, peer 2, the UAC and siprtt on core 1" ;; 6) echo "peer 1 alone on core 0, peer 2 alone on core 1, sipp and siprtt on cores $LOAD_CORES" ;; *) echo "peers on core 0, sipp on core 1" ;; esac)$([ "$LAT_RT" = 1 ] && echo ", SCHED_RR" || echo ", nice $NICE, UAC and siprtt nice $LAT_UAC_NICE, UASes nice $LAT_UAS_NICE")"
: >"$OUT/steps.txt"
for path in $PATHS; do
	CUR=$path
	start_peers "$path"
	start_uas bob "$BOB_ADDR" "$P2_ADDR"
	BOB_PID=$UAS_PID
	start_uas carol "$CAROL_ADDR" "$P1_ADDR"
	CAROL_PID=$UAS_PID
	# bob's binding must be found from peer 1 before the load starts
	ok=0
	for _ in $(seq 20); do
		uac "$path-probe" bob 1 1
		[ "$(echo "$RES" | cut -d' ' -f2)" = 1 ] && { ok=1; break; }
		sleep 1
	done
	[ "$ok" = 1 ] || die "$path: a call to bob through peer 1 does not get through: see $OUT/$path-probe"
	uac "$path-probe-carol" carol 1 1
	[ "$(echo "$RES" | cut -d' ' -f2)" = 1 ] || die "$path: a call to carol at peer 1 does not get through: see $OUT/$path-probe-carol"
	{
		if [ -n "$P1_URL" ]; then
			echo "== $path: peer 1's overlay view"
			curl -sk --max-time 3 "$P1_URL/api/overlay" || true
			echo
		fi
		echo "== $path: sockets of the peers"
		ss -Htunap 2>/dev/null | grep -E "pid=($( (tree "$P1_PID"; tree "$P2_PID") | paste -sd'|')))," || true
	} >"$OUT/$path-sockets.txt"
	log "$path: bob registered at peer 2, carol at peer 1; test calls passed; SIP streams ride: peer 1 $(stream_transports "$P1_URL"), peer 2 $(stream_transports "$P2_URL")"

	ramp "$path"
	log "$path: max $MAX calls/s"
	half=${LAT_RATE:-$((MAX / 2 / 50 * 50))}
	[ "$half" -gt 0 ] || half=50
	[ "$path" = stream ] && STREAM_HALF=$half
	if [ "$path" = kamailio ]; then
		half=${KAM_LAT_RATE:-${STREAM_HALF:-$half}}
		log "$path: latency runs at $half calls/s$([ -n "${STREAM_HALF:-}" ] && [ -z "${KAM_LAT_RATE:-}" ] && echo ", the stream path's rate")"
	fi
	if [ "$LAT_SETTLE" -gt 0 ]; then
		log "$path: $LAT_SETTLE s for the peers to settle after the ramp's overload"
		sleep "$LAT_SETTLE"
	fi
	latency "$path" "$half"
	RT=()
	echo "$path transports peer1=$(stream_transports "$P1_URL") peer2=$(stream_transports "$P2_URL")" >>"$OUT/steps.txt"
	echo "$path rss_mb $(awk '/^VmRSS/ {s += $2} END {print int(s / 1024)}' $(for p in $(tree "$P1_PID") $(tree "$P2_PID"); do echo "/proc/$p/status"; done))" >>"$OUT/steps.txt"
	stop_uases
	stop_peers
	sleep 2
done

# ---- report --------------------------------------------------------------

echo
echo "== steps (path ramp rate calls ok failed retrans achieved/s sipp-p50ms sipp-p99ms peers-cpu-us/call)"
grep ' ramp ' "$OUT/steps.txt" || true
echo "== latency runs (path lat kind rate calls ok failed retrans achieved/s sipp-p50 sipp-p99 cpu-us/call | siprtt: calls with180 with200 p50_180 p99_180 p50_200 p99_200 max_200 drops, us, first INVITE unix s)"
grep ' lat ' "$OUT/steps.txt" || true
echo
awk -v order="$PATHS" '
	$2 == "best" { best[$1] = $3; fail[$1] = $4; next }
	$2 == "lat" {
		# path lat kind rate | 5 calls 6 ok 7 failed 8 retrans 9 achieved 10 sipp-p50 11 sipp-p99 12 cpu |
		# 13 calls 14 w180 15 w200 16 p50_180 17 p99_180 18 p50_200 19 p99_200 20 max_200 21 drops
		p = $1; k = $3; rate[p] = $4
		i = ++n[p, k]
		v[p, k, "p50_180", i] = $16; v[p, k, "p99_180", i] = $17
		v[p, k, "p50_200", i] = $18; v[p, k, "p99_200", i] = $19; v[p, k, "cpu", i] = $12
		next
	}
	# median of the runs of path p, kind k, field f
	function med(p, k, f,    m, i, j, t, a) {
		m = n[p, k]
		for (i = 1; i <= m; i++) a[i] = v[p, k, f, i] + 0
		for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	function ms(us) { return sprintf("%.2f", us / 1000) }
	END {
		np = split(order, ps, " ")
		printf "%-10s | %-20s | %-9s | %-22s | %-22s | %-22s | %-22s | %s\n", "path", "max calls/s", "half rate", \
			"1 peer p50/p99 ->200", "2 peers p50/p99 ->200", "added per hop p50/p99", "added p99 ->180", "peers cpu/call (b)"
		for (i = 1; i <= np; i++) {
			p = ps[i]
			if (!((p, "b") in n) || !((p, "a") in n)) continue
			a50 = med(p, "a", "p50_200"); a99 = med(p, "a", "p99_200")
			b50 = med(p, "b", "p50_200"); b99 = med(p, "b", "p99_200")
			add99[p] = b99 - a99
			add180[p] = med(p, "b", "p99_180") - med(p, "a", "p99_180")
			printf "%-10s | %-20s | %-9s | %-22s | %-22s | %-22s | %-22s | %s\n", p, \
				best[p] (fail[p] ? " (fails " fail[p] ")" : " (top step)"), rate[p] "/s", \
				ms(a50) " / " ms(a99) " ms", ms(b50) " / " ms(b99) " ms", ms(b50 - a50) " / " ms(add99[p]) " ms", \
				ms(add180[p]) " ms", med(p, "b", "cpu") " us"
		}
		if (("udp" in best) && best["udp"] > 0) {
			print ""
			for (i = 1; i <= np; i++) {
				p = ps[i]
				if (p == "udp" || p == "kamailio" || !(p in best)) continue
				printf "%s / udp max calls/s: %.2f (target >= 0.80); %s added p99 per hop (INVITE->200, median of runs): %s ms (target <= 2 ms; udp: %s ms)\n", \
					p, best[p] / best["udp"], p, ms(add99[p]), ms(add99["udp"])
			}
		}
		# The reference hop: what two Kamailio instances add, same layout and
		# (by default) the same offered rate as the stream path.
		if (("kamailio" in add99) && ("stream" in add99)) {
			printf "reference: kamailio added p99 per hop %s ms at %s/s (max %s calls/s); stream %s ms at %s/s; stream - kamailio: %s ms, stream / kamailio max calls/s: %.2f\n", \
				ms(add99["kamailio"]), rate["kamailio"], best["kamailio"], ms(add99["stream"]), rate["stream"], \
				ms(add99["stream"] - add99["kamailio"]), (best["kamailio"] > 0) ? best["stream"] / best["kamailio"] : 0
		}
	}' "$OUT/steps.txt"
echo "== connections the SIP streams rode at the end of each path (\"-\": the old path has no streams)"
grep ' transports ' "$OUT/steps.txt" || true
echo
for f in "$OUT"/*-peer[12].stderr; do
	[ -s "$f" ] && echo "$(basename "$f"): $(wc -l <"$f") lines, e.g.: $(grep -v '^ *$' "$f" | head -2 | cut -c1-300)"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "logs, sipp CSVs, siprtt outputs: $OUT"
