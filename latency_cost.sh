#!/usr/bin/env bash
# latency_cost.sh: what latency probes cost a bandwidth test on loopback.
#
#   ./latency_cost.sh                  # 5 s per run, 5 runs per mode
#   COST_TIME=10 COST_RUNS=7 ./latency_cost.sh
#
# Runs wperf with and without --no-latency, interleaved, for upload and
# -R, and prints each mode's median receiver rate both ways and the
# difference. Then it compares wperf --ping's median round trip with the
# floor, the same 64-byte request and response over plain TCP
# (testdata/tcpecho), both as separate processes, interleaved. Kept apart
# from bench.sh (wperf against iperf3). Run it by hand on a quiet
# machine; CI does not run it.
set -euo pipefail
cd "$(dirname "$0")"

COST_TIME=${COST_TIME:-5}
COST_RUNS=${COST_RUNS:-5}
COST_PORT=${COST_PORT:-8798}

dir=$(mktemp -d)
CGO_ENABLED=0 go build -o "$dir/wperf" .
CGO_ENABLED=0 go build -o "$dir/tcpecho" ./testdata/tcpecho

exec python3 - "$dir" "$COST_TIME" "$COST_RUNS" "$COST_PORT" <<'PY'
import json, statistics, subprocess, sys, time

dir, secs, runs, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wperf, tcpecho, echo_addr = dir + "/wperf", dir + "/tcpecho", f"127.0.0.1:{int(port) + 1}"
server = subprocess.Popen([wperf, "-s", "-p", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
floor = subprocess.Popen([tcpecho, "-listen", echo_addr])
time.sleep(0.5)

def rate(extra):
    out = subprocess.run([wperf, "-c", "127.0.0.1", "-p", port, "-t", secs, "-J"] + extra,
                         capture_output=True, text=True).stdout
    doc = json.loads(out)
    if doc.get("error"):
        raise SystemExit(f"wperf {extra}: {doc['error']}")
    return doc["end"]["sum_received"]["bits_per_second"]

print(f"latency probes' cost on loopback: {secs} s per run, {runs} runs per mode, interleaved")
print(f"{'mode':<10} {'probes Gbit/s':>14} {'--no-latency':>13} {'difference':>11}")
try:
    for name, extra in [("upload", []), ("reverse", ["-R"])]:
        on, off = [], []
        for _ in range(runs):
            on.append(rate(extra))
            off.append(rate(extra + ["--no-latency"]))
        a, b = statistics.median(on), statistics.median(off)
        print(f"{name:<10} {a/1e9:>14.2f} {b/1e9:>13.2f} {100*(a/b-1):>+10.1f}%", flush=True)
        print(f"{'':<10} runs: probes {[round(x/1e9, 2) for x in on]}, none {[round(x/1e9, 2) for x in off]}")

    # 500 probes of 64 bytes, 10 ms apart, per run; the median of each.
    ping, tcp = [], []
    for _ in range(runs):
        out = subprocess.run([wperf, "-c", "127.0.0.1", "-p", port, "--ping", "--ping-count", "500", "-i", "0.01", "-J"],
                             capture_output=True, text=True).stdout
        ping.append(1000 * json.loads(out)["end"]["median_ms"])
        out = subprocess.run([tcpecho, "-connect", echo_addr, "-n", "500", "-i", "10ms", "-size", "64"],
                             capture_output=True, text=True).stdout
        tcp.append(1000 * float(out))
    a, b = statistics.median(ping), statistics.median(tcp)
    print(f"round trip, median µs: wperf --ping {a:.1f}, plain TCP {b:.1f}, wperf adds {a - b:+.1f}")
    print(f"{'':<10} runs: --ping {[round(x, 1) for x in ping]}, TCP {[round(x, 1) for x in tcp]}")
finally:
    server.terminate()
    floor.terminate()
PY
