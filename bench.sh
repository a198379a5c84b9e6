#!/usr/bin/env bash
# bench.sh: wperf against iperf3 on loopback, interleaved in one run.
#
#   ./bench.sh                 # 5 s per run, 3 runs per mode and tool
#   BENCH_TIME=10 BENCH_RUNS=5 ./bench.sh
#
# For each mode it prints both tools' median receiver rate, the median
# of the ratios wperf/iperf3 of runs made back to back (in turns, each
# tool going first every other time), and each tool's CPU seconds
# (client + server) per GB moved. The last row sets iperf3 -l 1M
# against the Go TCP floor (testdata/gofloor: plain 1 MiB writes and
# reads), the most a Go program moves here without any protocol. Run it
# by hand on a quiet machine; CI does not run it.
set -euo pipefail
cd "$(dirname "$0")"

BENCH_TIME=${BENCH_TIME:-5}
BENCH_RUNS=${BENCH_RUNS:-3}
IPERF_PORT=${IPERF_PORT:-5299}
WPERF_PORT=${WPERF_PORT:-8799}
FLOOR_PORT=${FLOOR_PORT:-8798}

command -v iperf3 >/dev/null || { echo "bench.sh: needs iperf3 (apt-get install -y iperf3)" >&2; exit 1; }
dir=$(mktemp -d)
CGO_ENABLED=0 go build -o "$dir/wperf" .
CGO_ENABLED=0 go build -o "$dir/gofloor" ./testdata/gofloor
echo "host: Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs"

exec python3 - "$dir" "$BENCH_TIME" "$BENCH_RUNS" "$IPERF_PORT" "$WPERF_PORT" "$FLOOR_PORT" <<'PY'
import json, os, statistics, subprocess, sys, time

dir, secs, runs, iport, wport, fport = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
wperf, gofloor = dir + "/wperf", dir + "/gofloor"
tick = os.sysconf("SC_CLK_TCK")

def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p

servers = {
    "iperf3": start(["iperf3", "-s", "-p", iport]),
    "wperf": start([wperf, "-s", "-p", wport]),
    "gofloor": start([gofloor, "-s", "-p", fport]),
}
clients = {
    "iperf3": lambda extra: ["iperf3", "-c", "127.0.0.1", "-p", iport, "-t", secs, "-J"] + extra,
    "wperf": lambda extra: [wperf, "-c", "127.0.0.1", "-p", wport, "-t", secs, "-J"] + extra,
    "gofloor": lambda extra: [gofloor, "-c", "127.0.0.1", "-p", fport, "-t", secs] + extra,
}
# Each mode: its name, then the options of iperf3 and of the tool set
# against it (wperf, except in the last row).
modes = [
    ("upload", [], "wperf", []), ("reverse -R", ["-R"], "wperf", ["-R"]),
    ("bidir", ["--bidir"], "wperf", ["--bidir"]), ("parallel -P 4", ["-P", "4"], "wperf", ["-P", "4"]),
    ("upload -l 1M", ["-l", "1M"], "wperf", ["-l", "1M"]),
    ("reverse -R -l 1M", ["-R", "-l", "1M"], "wperf", ["-R", "-l", "1M"]),
    ("upload -Z", ["-Z"], "wperf", ["-Z"]),
    ("upload -Z -l 1M", ["-Z", "-l", "1M"], "wperf", ["-Z", "-l", "1M"]),
    ("Go TCP floor, 1M", ["-l", "1M"], "gofloor", ["-l", "1048576"]),
]

def one(tool, extra):
    srv = servers[tool]
    before = cpu_of(srv.pid)
    p = subprocess.Popen(clients[tool](extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    time.sleep(0.3)  # let the server finish its accounting
    server_cpu = cpu_of(srv.pid) - before
    doc = json.loads(out)
    if doc.get("error"):
        raise SystemExit(f"{tool} {extra}: {doc['error']}")
    end = doc["end"]
    fwd = end["sum_received"]["bits_per_second"]
    rev = end.get("sum_received_bidir_reverse", {}).get("bits_per_second", 0)
    moved = end["sum_received"]["bytes"] + end.get("sum_received_bidir_reverse", {}).get("bytes", 0)
    return fwd, rev, moved, server_cpu

def udp_run(tool, extra):
    """One UDP run: sent and received bits/s, loss %, received datagrams/s."""
    p = subprocess.run(clients[tool](extra), capture_output=True, text=True)
    doc = json.loads(p.stdout)
    if doc.get("error"):
        raise SystemExit(f"{tool} {extra}: {doc['error']}")
    end = doc["end"]
    sent, recv = end["sum_sent"], end["sum_received"]
    got = recv["packets"] - recv["lost_packets"]
    return sent["bits_per_second"], recv["bits_per_second"], recv["lost_percent"], got / max(recv["seconds"], 1e-9)

def client_cpu_run(tool, extra):
    # The client is our child: os.times() counts its CPU once it is reaped.
    r0 = os.times()
    res = one(tool, extra)
    r1 = os.times()
    client_cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return res + (client_cpu,)

print(f"wperf vs iperf3 on loopback: {secs} s per run, {runs} runs per mode and tool, interleaved")
print(f"{'mode':<18} {'iperf3 Gbit/s':>14} {'wperf Gbit/s':>13} {'ratio':>6}   {'CPU s/GB iperf3':>15} {'wperf':>6}")
try:
    for name, iperf_extra, other, extra in modes:
        got = {"iperf3": [], other: []}
        for n in range(runs):
            pair = [("iperf3", iperf_extra), (other, extra)]
            if n % 2:
                pair.reverse()  # each tool goes first every other time
            for tool, args in pair:
                got[tool].append(client_cpu_run(tool, args))
        med = {}
        for tool, rs in got.items():
            total = statistics.median(f + r for f, r, _, _, _ in rs)
            cpu = statistics.median((s + c) / (m / 1e9) for _, _, m, s, c in rs)
            weak = statistics.median(min(f, r) / max(f, r) if r else 1 for f, r, _, _, _ in rs)
            med[tool] = (total, cpu, weak)
        # Each run's ratio to the iperf3 run next to it: load that comes
        # and goes on the machine then hits both sides of a ratio.
        ratio = statistics.median((b[0] + b[1]) / (a[0] + a[1]) for a, b in zip(got["iperf3"], got[other]))
        line = f"{name:<18} {med['iperf3'][0]/1e9:>14.2f} {med[other][0]/1e9:>13.2f} {ratio:>6.2f}   {med['iperf3'][1]:>15.3f} {med[other][1]:>6.3f}"
        if name == "bidir":
            line += f"   weaker/stronger: iperf3 {med['iperf3'][2]:.2f} wperf {med['wperf'][2]:.2f}"
        print(line, flush=True)

    # UDP, 1400-byte datagrams: both tools paced at 1G, both unpaced, and
    # wperf over WebSocket at 100M beside iperf3's real UDP at that rate.
    udp_modes = [
        ("udp -b 1G", ["-u", "-b", "1G", "-l", "1400"], []),
        ("udp -b 0", ["-u", "-b", "0", "-l", "1400"], []),
        ("udp -b 100M (ws)", ["-u", "-b", "100M", "-l", "1400"], ["--udp-transport", "ws"]),
    ]
    print()
    print(f"{'UDP mode':<18} {'iperf3 sent/recv Mbit/s':>24} {'loss':>6}   {'wperf sent/recv Mbit/s':>23} {'loss':>6}   {'recv datagrams/s iperf3':>23} {'wperf':>9} {'ratio':>6}")
    for name, extra, wperf_only in udp_modes:
        got = {"iperf3": [], "wperf": []}
        for _ in range(runs):
            for tool in ("iperf3", "wperf"):
                got[tool].append(udp_run(tool, extra + (wperf_only if tool == "wperf" else [])))
        med = {t: [statistics.median(r[i] for r in rs) for i in range(4)] for t, rs in got.items()}
        i, w = med["iperf3"], med["wperf"]
        print(f"{name:<18} {i[0]/1e6:>11.1f} / {i[1]/1e6:>10.1f} {i[2]:>5.1f}%   {w[0]/1e6:>10.1f} / {w[1]/1e6:>10.1f} {w[2]:>5.1f}%"
              f"   {i[3]:>23.0f} {w[3]:>9.0f} {w[3]/i[3] if i[3] else 0:>6.2f}", flush=True)
finally:
    for s in servers.values():
        s.terminate()
PY
