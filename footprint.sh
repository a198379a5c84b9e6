#!/usr/bin/env bash
# footprint.sh: what a router pays for wperf. Builds linux/amd64 as
# build.sh does and reports, against the limits:
#   - the stripped binary's size                  (limit 6.5 MiB)
#   - the server's resident memory when idle      (limit 10 MiB)
#   - its peak during a -P 16 test (VmHWM)        (limit 24 MiB)
# and, for information, the peak during a -P 16 test over wss://.
# It times nothing and passes or fails on the limits alone (exit 1 when
# one is exceeded). Linux only (/proc). FOOTPRINT_TIME sets the test
# length (default 3 s).
set -euo pipefail
cd "$(dirname "$0")"

secs=${FOOTPRINT_TIME:-3}
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

OUT=$dir ./build.sh linux/amd64 >/dev/null
bin=$dir/wperf-linux-amd64

# free_port prints a loopback port nothing listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# kib PID FIELD prints a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# serve FLAGS... starts a server, waits until it listens, sets $pid and $port.
serve() {
	port=$(free_port)
	"$bin" -s -B 127.0.0.1 -p "$port" --no-geo "$@" >"$dir/server-$port.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 100); do
		grep -q "Server listening" "$dir/server-$port.log" && return
		sleep 0.05
	done
	echo "footprint.sh: the server did not start" >&2
	exit 1
}

failed=0
# report NAME VALUE LIMIT UNIT
report() {
	local verdict=ok
	if [ -n "$3" ] && [ "$2" -gt "$3" ]; then verdict="OVER the limit of $3 $4"; failed=1; fi
	[ -n "$3" ] || verdict="(information)"
	printf '%-36s %10s %s  %s\n' "$1" "$2" "$4" "$verdict"
}

size=$(stat -c %s "$bin")
report "binary, linux/amd64, stripped" "$size" $((13 * 1024 * 1024 / 2)) bytes
printf '%-36s %10s MiB\n' "" "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')"

serve
sleep 1
report "server RSS, idle" "$(kib "$pid" VmRSS)" $((10 * 1024)) KiB
"$bin" -c 127.0.0.1 -p "$port" -P 16 -t "$secs" -i 0 >/dev/null
report "server peak RSS, -P 16" "$(kib "$pid" VmHWM)" $((24 * 1024)) KiB
"$bin" -c 127.0.0.1 -p "$port" -P 16 -t "$secs" -i 0 -R >/dev/null
report "server peak RSS, -P 16 and -P 16 -R" "$(kib "$pid" VmHWM)" $((24 * 1024)) KiB

serve --tls
"$bin" -c "wss://127.0.0.1:$port/" --insecure -P 16 -t "$secs" -i 0 >/dev/null 2>&1
"$bin" -c "wss://127.0.0.1:$port/" --insecure -P 16 -t "$secs" -i 0 -R >/dev/null 2>&1
report "TLS server peak RSS, same two tests" "$(kib "$pid" VmHWM)" "" KiB
exit $failed
