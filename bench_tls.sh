#!/usr/bin/env bash
# bench_tls.sh: what TLS costs. wperf over ws:// and over wss:// on
# loopback, interleaved in one run (bench.sh compares ws with iperf3).
#
#   ./bench_tls.sh                 # 5 s per run, 3 runs per mode and scheme
#   BENCH_TIME=10 BENCH_RUNS=5 ./bench_tls.sh
#
# For each mode it prints both schemes' median receiver rate, the ratio
# wss/ws, and each one's CPU seconds (client + server) per GB moved. Run
# it by hand on a quiet machine; CI does not run it.
set -euo pipefail
cd "$(dirname "$0")"

BENCH_TIME=${BENCH_TIME:-5}
BENCH_RUNS=${BENCH_RUNS:-3}
# free_port prints a loopback port nothing listens on (the machine may run
# other benchmarks).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS_PORT=${WS_PORT:-$(free_port)}
WSS_PORT=${WSS_PORT:-$(free_port)}

bin=$(mktemp -d)/wperf
CGO_ENABLED=0 go build -o "$bin" .

exec python3 - "$bin" "$BENCH_TIME" "$BENCH_RUNS" "$WS_PORT" "$WSS_PORT" <<'PY'
import json, os, re, statistics, subprocess, sys, time

wperf, secs, runs, ws_port, wss_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
tick = os.sysconf("SC_CLK_TCK")

def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = p.stdout.readline()  # TLS fingerprint or the listening line
    return p, first

servers, fp = {}, None
servers["ws"], _ = start([wperf, "-s", "-B", "127.0.0.1", "-p", ws_port])
servers["wss"], line = start([wperf, "-s", "-B", "127.0.0.1", "-p", wss_port, "--tls"])
found = re.search(r"sha256:[0-9a-f]{64}", line)
if not found:
    raise SystemExit(f"bench_tls.sh: the wss server did not start on port {wss_port}: {line!r}")
fp = found.group(0)
clients = {
    "ws": lambda extra: [wperf, "-c", f"ws://127.0.0.1:{ws_port}/", "-t", secs, "-J"] + extra,
    "wss": lambda extra: [wperf, "-c", f"wss://127.0.0.1:{wss_port}/", "--fingerprint", fp, "-t", secs, "-J"] + extra,
}
modes = [("upload", []), ("reverse -R", ["-R"]), ("bidir", ["--bidir"]), ("parallel -P 4", ["-P", "4"])]

def one(scheme, extra):
    srv = servers[scheme]
    before = cpu_of(srv.pid)
    r0 = os.times()
    p = subprocess.run(clients[scheme](extra), capture_output=True, text=True)
    r1 = os.times()
    time.sleep(0.3)  # let the server finish its accounting
    server_cpu = cpu_of(srv.pid) - before
    client_cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    doc = json.loads(p.stdout)
    if doc.get("error"):
        raise SystemExit(f"{scheme} {extra}: {doc['error']}")
    end = doc["end"]
    rate = end["sum_received"]["bits_per_second"] + end.get("sum_received_bidir_reverse", {}).get("bits_per_second", 0)
    moved = end["sum_received"]["bytes"] + end.get("sum_received_bidir_reverse", {}).get("bytes", 0)
    return rate, (server_cpu + client_cpu) / (moved / 1e9)

print(f"wperf ws:// vs wss:// on loopback: {secs} s per run, {runs} runs per mode and scheme, interleaved")
print(f"{'mode':<16} {'ws Gbit/s':>10} {'wss Gbit/s':>11} {'wss/ws':>7}   {'CPU s/GB ws':>11} {'wss':>6}")
try:
    for name, extra in modes:
        got = {"ws": [], "wss": []}
        for _ in range(runs):
            for scheme in ("ws", "wss"):
                got[scheme].append(one(scheme, extra))
        med = {s: (statistics.median(r for r, _ in rs), statistics.median(c for _, c in rs)) for s, rs in got.items()}
        print(f"{name:<16} {med['ws'][0]/1e9:>10.2f} {med['wss'][0]/1e9:>11.2f} {med['wss'][0]/med['ws'][0]:>7.2f}"
              f"   {med['ws'][1]:>11.3f} {med['wss'][1]:>6.3f}", flush=True)
finally:
    for s in servers.values():
        s.terminate()
PY
