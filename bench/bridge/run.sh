#!/usr/bin/env bash
# Media bridge benchmark: the p2psip WebRTC<->plain-RTP bridge (package bridge, behind
# bench/bridge/ngd) next to rtpengine (Debian rtpengine-daemon, userspace), under the same load.
#
#   bench/bridge/run.sh          # from anywhere; builds bench/bridge/{ngd,load} into a scratch dir
#
# One load generator (bench/bridge/load) drives both daemons identically over rtpengine's ng
# protocol (offer with the browser's WebRTC SDP, answer with the phone's plain SDP, delete).
# Each call: a pion PeerConnection as the browser (PCMU/PCMA/telephone-event offer, sends PCMU
# every 20 ms) and a UDP socket as the phone that echoes every RTP packet back, so media goes
#   browser -SRTP-> daemon -RTP-> phone (echo) -RTP-> daemon -SRTP-> browser.
# The daemon runs alone on core 1, the load generator on core 0, one daemon after the other in
# the same run. The number of calls steps up (STEPS); per step, over WINDOW: round-trip loss,
# the latency the daemon added (kernel receive timestamps; see bench/bridge/load/media.go), the
# daemon's CPU (sum of its threads' /proc/<pid>/task/*/schedstat) and RSS. The ramp stops at the
# first step with > 0.1 % loss or p99 added latency > MAX_P99 (then tries once halfway back), or
# where the load generator itself is saturated (> 90 % of its core, or > 50 ms behind schedule).
#
# Environment (all optional):
#   STEPS="50,100,150,200,250,300,400,500,600"   concurrent calls per step, ascending
#   WINDOW=8s                  measuring window per step
#   MAX_P99=20ms               a step also fails when the added latency's p99 exceeds this (a relay
#                              past its ceiling queues packets in socket buffers before it drops any)
#   DAEMONS="p2psip rtpengine" which daemons, in order
#   SRTP=gcm                   SRTP profile the browsers offer: gcm (AEAD_AES_128_GCM, as Chromium
#                              prefers), cm (AES128_CM_HMAC_SHA1_80) or all
#   RT=1                       run daemon and load generator SCHED_RR (chrt -r 10): the machine is
#                              shared, and other jobs' CPU bursts otherwise land in the latency.
#                              RT=0: nice -n -10 instead.
#   PROFILE=0                  1: ngd serves pprof; a CPU profile of every window and a heap
#                              profile after it land in OUT, and the top of the best step's are
#                              printed (costs the p2psip side a few % of CPU)
#   OUT=dir                    logs, per-step TSVs, profiles (default: a new /tmp dir, kept)
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STEPS=${STEPS:-"50,100,150,200,250,300,400,500,600"}
WINDOW=${WINDOW:-8s}
DAEMONS=${DAEMONS:-"p2psip rtpengine"}
SRTP=${SRTP:-gcm}
RT=${RT:-1}
PROFILE=${PROFILE:-0}
MAX_P99=${MAX_P99:-20ms}
OUT=${OUT:-$(mktemp -d /tmp/bridgebench.XXXXXX)}
mkdir -p "$OUT"

for tool in taskset awk ss go; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (daemon on core 1, load on core 0)"
if [[ " $DAEMONS " == *" rtpengine "* ]] && ! command -v rtpengine >/dev/null 2>&1; then
	log "installing rtpengine-daemon"
	apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rtpengine-daemon >/dev/null ||
		die "apt-get install rtpengine-daemon failed"
fi
if [ "$RT" = 1 ]; then
	command -v chrt >/dev/null 2>&1 || die "'chrt' not found (RT=0 to run without it)"
	PRIO=(chrt -r 10)
elif [ "$(id -u)" = 0 ]; then
	PRIO=(nice -n -10)
else
	PRIO=()
fi

SCRATCH=$(mktemp -d /tmp/bridgebench-run.XXXXXX)
DAEMON_PID=""
cleanup() {
	set +e
	stop_daemon
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_daemon() {
	if [ -n "$DAEMON_PID" ]; then
		kill "$DAEMON_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
		DAEMON_PID=""
	fi
}

wait_udp() { # addr:port
	for _ in $(seq 100); do
		ss -Huln "src $1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	die "nothing listens on udp $1"
}

start_daemon() { # name -> DAEMON_PID, NG
	case $1 in
	p2psip)
		local pp=()
		[ "$PROFILE" = 1 ] && pp=(-pprof 127.0.0.1:6061)
		GODEBUG=gctrace=1 "${PRIO[@]}" taskset -c 1 "$SCRATCH/ngd" -listen 127.0.0.1:22224 -ip 127.0.0.1 \
			-ports 40000-49999 "${pp[@]}" >"$OUT/p2psip.stdout" 2>"$OUT/p2psip.stderr" &
		DAEMON_PID=$!
		NG=127.0.0.1:22224
		;;
	rtpengine)
		"${PRIO[@]}" taskset -c 1 rtpengine --interface=127.0.0.1 --listen-ng=127.0.0.1:22223 --foreground \
			--table=-1 --log-stderr --log-level=4 --port-min=30000 --port-max=39999 \
			>"$OUT/rtpengine.stdout" 2>"$OUT/rtpengine.stderr" &
		DAEMON_PID=$!
		NG=127.0.0.1:22223
		;;
	*) die "unknown daemon $1" ;;
	esac
	wait_udp "$NG"
	sleep 0.5
}

log "out: $OUT; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; HEAD $(git -C "$REPO" log -1 --format=%h 2>/dev/null || echo ?)"
log "building bench/bridge/ngd and bench/bridge/load"
(cd "$REPO" && go build -o "$SCRATCH/ngd" ./bench/bridge/ngd && go build -o "$SCRATCH/load" ./bench/bridge/load)
command -v rtpengine >/dev/null 2>&1 && log "rtpengine $(rtpengine --version 2>&1 | sed 's/^Version: *//')"

for d in $DAEMONS; do
	log "$d: starting (core 1, ${PRIO[*]:-default priority})"
	start_daemon "$d"
	pp=()
	[ "$PROFILE" = 1 ] && [ "$d" = p2psip ] && pp=(-pprof http://127.0.0.1:6061 -out "$OUT")
	"${PRIO[@]}" taskset -c 0 "$SCRATCH/load" -ng "$NG" -pid "$DAEMON_PID" -name "$d" -steps "$STEPS" \
		-window "$WINDOW" -max-p99 "$MAX_P99" -srtp "$SRTP" -dump-sdp "${pp[@]}" >"$OUT/$d.tsv" 2> >(tee "$OUT/$d.log" | grep -v -e '^==' -e '^[a-z]=' -e '^$' >&2) ||
		log "$d: the load generator failed (see $OUT/$d.log)"
	stop_daemon
	sleep 1
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report ------------------------------------------------------------------
cat "$OUT"/*.tsv >"$OUT/all.tsv" 2>/dev/null || true
echo
echo "Steps (loss = round trip; added = latency the daemon added, both directions, µs; cpu = daemon, % of its core;"
echo "calls/core = calls / cpu; KiB/call = (RSS - idle RSS) / calls; load = load generator's core, %, and how late
its 1 ms send slots ran, p99; a step passes with <= 0.1 % loss and p99 added <= $MAX_P99):"
awk -F'\t' '
	/^#/ { next }
	{ printf "  %-9s %4d calls  loss %6.3f %%  added p50 %6s p99 %6s max %7s  cpu %5.1f %%  %5.0f calls/core  %6.1f KiB/call  load %3.0f %% (late p99 %5.1f ms)  %s%s\n",
		$1, $2, $7, $10, $11, $12, $21, $22, $24, $25, $27 / 1000, ($30 == "true" ? "pass" : "FAIL"), ($31 == "true" ? " (load-generator bound)" : "") }' "$OUT/all.tsv"
echo
awk -F'\t' -v order="$DAEMONS" '
	$1 == "#best" { best[$2] = $3; fail[$2] = $4; stop[$2] = $5; next }
	/^#/ { next }
	{
		d = $1; n = $2 + 0
		loss[d, n] = $7; p99[d, n] = $11; p50[d, n] = $10; cpu[d, n] = $21; kib[d, n] = $24; rss[d, n] = $23; pass[d, n] = ($30 == "true")
		if (pass[d, n] && $11 + 0 <= 1000 && n > lowlat[d]) lowlat[d] = n
		if (!((d) in first)) first[d] = n
		if (n > top[d]) top[d] = n
		steps[d, n] = 1; ns[n] = 1
	}
	# RSS growth per added call from the first step to the largest (leaves the fixed growth of the
	# first step out; RSS does not shrink again after the halfway step)
	function slope(d) { return (top[d] > first[d]) ? (rss[d, top[d]] - rss[d, first[d]]) / (top[d] - first[d]) : 0 }
	function percore(d, n) { return cpu[d, n] > 0 ? n / (cpu[d, n] / 100) : 0 }
	function ratio(a, b, inv) { return (a > 0 && b > 0) ? sprintf("%.2fx", inv ? b / a : a / b) : "-" }
	END {
		split(order, ds, " "); a = ds[1]; b = ds[2]
		if (b == "") { print "(one daemon only: no ratios)"; exit }
		# the highest step both passed
		common = 0
		for (n in ns) if (((a, n) in pass) && ((b, n) in pass) && pass[a, n] && pass[b, n] && n + 0 > common) common = n + 0
		printf "%-44s %16s %16s %8s\n", "", a, b, a "/" b
		ba = best[a] (stop[a] == "load-generator" ? " (lg)" : ""); bb = best[b] (stop[b] == "load-generator" ? " (lg)" : "")
		printf "%-44s %16s %16s %8s\n", "most calls passing (best step)", ba, bb, ratio(best[a], best[b], 0)
		printf "%-44s %16s %16s %8s\n", "the ramp stopped on", stop[a] (fail[a] ? " at " fail[a] : ""), stop[b] (fail[b] ? " at " fail[b] : ""), ""
		printf "%-44s %16.0f %16.0f %8s\n", "calls per core at the best step", percore(a, best[a]), percore(b, best[b]), ratio(percore(a, best[a]), percore(b, best[b]), 0)
		if (common > 0) {
			printf "%-44s %16.0f %16.0f %8s\n", "calls per core at " common " calls", percore(a, common), percore(b, common), ratio(percore(a, common), percore(b, common), 0)
			printf "%-44s %16s %16s %8s\n", "added latency p50 / p99 at " common " calls, us", p50[a, common] " / " p99[a, common], p50[b, common] " / " p99[b, common], ratio(p99[a, common], p99[b, common], 1)
			printf "%-44s %16s %16s %8s\n", "KiB RSS per call at " common " calls", kib[a, common], kib[b, common], ratio(kib[a, common], kib[b, common], 1)
		}
		if (common != 100 && ((a, 100) in p99) && ((b, 100) in p99))
			printf "%-44s %16s %16s %8s\n", "added latency p50 / p99 at 100 calls, us", p50[a, 100] " / " p99[a, 100], p50[b, 100] " / " p99[b, 100], ratio(p99[a, 100], p99[b, 100], 1)
		printf "%-44s %16s %16s %8s\n", "added latency p99 at the best step, us", p99[a, best[a]], p99[b, best[b]], ""
		printf "%-44s %16s %16s %8s\n", "KiB RSS per call at the largest step", kib[a, top[a]] " (" top[a] ")", kib[b, top[b]] " (" top[b] ")", ratio(kib[a, top[a]], kib[b, top[b]], 1)
		printf "%-44s %16.1f %16.1f %8s\n", "KiB RSS per added call, first to largest step", slope(a), slope(b), ratio(slope(a), slope(b), 1)
		printf "%-44s %16d %16d %8s\n", "most calls with p99 added <= 1 ms (passing)", lowlat[a], lowlat[b], ""
		print "(ratio: " a " relative to " b ", > 1 = " a " better; latency and memory rows inverted; (lg): the ramp"
		print " stopped because the load generator was saturated, so the daemon'"'"'s own ceiling is higher)"
	}' "$OUT/all.tsv"
if [ -s "$OUT/p2psip.stderr" ]; then
	echo
	awk '/^gc [0-9]+ @/ {
			split($5, t, "+"); n++; w[n] = t[2] + 0; if (t[2] + 0 > mx) mx = t[2] + 0
		}
		END {
			if (n == 0) exit
			for (i = 2; i <= n; i++) for (j = i; j > 1 && w[j - 1] > w[j]; j--) { x = w[j]; w[j] = w[j - 1]; w[j - 1] = x }
			printf "p2psip GC (GODEBUG=gctrace=1): %d cycles in the run, concurrent mark %.0f ms wall median, %.0f ms max (1 P)\n", n, w[int((n + 1) / 2)], mx
		}' "$OUT/p2psip.stderr"
fi
if [ "$PROFILE" = 1 ]; then
	b=$(awk -F'\t' '$1 == "#best" && $2 == "p2psip" { print $3 }' "$OUT/all.tsv")
	if [ -n "$b" ] && [ -s "$OUT/p2psip-$b.cpu.pprof" ]; then
		echo
		echo "== p2psip CPU profile at $b calls (go tool pprof -top $OUT/p2psip-$b.cpu.pprof)"
		(cd "$REPO" && go tool pprof -top -nodecount=30 "$SCRATCH/ngd" "$OUT/p2psip-$b.cpu.pprof" 2>/dev/null | sed -n '4,40p')
		echo "== p2psip heap in use at $b calls"
		(cd "$REPO" && go tool pprof -sample_index=inuse_space -top -nodecount=20 "$SCRATCH/ngd" "$OUT/p2psip-$b.heap.pprof" 2>/dev/null | sed -n '4,28p')
		cp "$SCRATCH/ngd" "$OUT/ngd" # the binary the profiles belong to
	fi
fi
echo "logs, TSVs, SDPs of the first call: $OUT"
