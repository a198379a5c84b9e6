#!/usr/bin/env bash
# soak.sh: wperf -s under load and under attack, on loopback, for a
# bounded time; it prints the figures of README's "Reliability" section.
#
#   ./soak.sh                          # 120 s of mixed load, then 1,000 sequential tests
#   SOAK_TIME=20 SOAK_SEQ=100 ./soak.sh   # a quick look
#
# Throughout: 200 slowloris connections (half-sent request headers, from
# 10 addresses) and, every few seconds, the attacks of attack_test.go:
# frame headers announcing 16 MiB on /echo, ping floods that never read,
# test squatters, wrong tokens, malformed first messages and bursts of
# reverse traceroutes. Phase 1: 64 clients (4 on each of 16 addresses)
# run tests of mixed modes back to back for SOAK_TIME seconds (the server
# has --max-clients 72: 64 for them, 8 for what the attackers may hold
# within the per-address caps; the other caps are the defaults). Phase 2:
# SOAK_SEQ tests one after the other. Then everything stops and the
# script waits one idle timeout for the server's figures to settle.
#
# It reports tests completed and failed, the server's peak RSS and file
# descriptors, and those figures before, during and after. Clients come
# from 127.0.N.M addresses, all of which are this machine on Linux. Run it
# by hand; CI does not.
set -euo pipefail
cd "$(dirname "$0")"

SOAK_TIME=${SOAK_TIME:-120}
SOAK_SEQ=${SOAK_SEQ:-1000}
SOAK_PORT=${SOAK_PORT:-8798}
SOAK_IDLE=${SOAK_IDLE:-10}

bin=$(mktemp -d)/wperf
CGO_ENABLED=0 go build -o "$bin" .

exec python3 - "$bin" "$SOAK_TIME" "$SOAK_SEQ" "$SOAK_PORT" "$SOAK_IDLE" <<'PY'
import json, os, random, socket, struct, subprocess, sys, threading, time

wperf, soak_time, seq_n, port, idle = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
token = "soak-secret"
stop = threading.Event()
lock = threading.Lock()
stats = {"phase1_ok": 0, "phase1_failed": 0, "phase2_ok": 0, "phase2_failed": 0}
failures = []

server = subprocess.Popen([wperf, "-s", "-p", str(port), "--token", token, "--max-clients", "72",
                           "--idle-timeout", str(idle), "--no-geo", "--dns", "127.0.0.1:1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
server_log = []
threading.Thread(target=lambda: [server_log.append(l) for l in server.stdout], daemon=True).start()
time.sleep(0.5)

def figures():
    rss = hwm = 0
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm, len(os.listdir(f"/proc/{server.pid}/fd"))

peak = {"rss": 0, "fds": 0}
def sampler():
    while not stop.is_set():
        rss, hwm, fds = figures()
        peak["rss"], peak["fds"] = max(peak["rss"], hwm), max(peak["fds"], fds)
        time.sleep(0.25)

# ---- clients ----

MODES = [["-t", "2"], ["-t", "2", "-R"], ["-t", "2", "--bidir"], ["-t", "2", "-P", "4"],
         ["-n", "50M"], ["-n", "50M", "-R"], ["-k", "500", "-l", "16K", "--bidir"], ["-t", "1", "-O", "0.5", "-P", "2", "-R"]]

def client(src, args, phase):
    cmd = [wperf, "-c", "127.0.0.1", "-p", str(port), "-B", src, "--token", token, "-i", "0"] + args
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with lock:
        if p.returncode == 0:
            stats[phase + "_ok"] += 1
        else:
            stats[phase + "_failed"] += 1
            failures.append(f"{src} {' '.join(args)}: {p.stderr.strip()}")

def worker(src, until):
    rnd = random.Random(src)
    while time.time() < until:
        client(src, rnd.choice(MODES), "phase1")

# ---- attackers ----

def ws_upgrade(src, path="/", extra=""):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: wperf.v1\r\n{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    return s, head.split(b" ")[1:2] == [b"101"]

AUTH = f"Authorization: Bearer {token}\r\n"

def frame(op, payload, length=None):
    n = len(payload) if length is None else length
    key = b"\x01\x02\x03\x04"
    if n < 126:
        h = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        h = bytes([0x80 | op, 0xfe]) + struct.pack(">H", n)
    else:
        h = bytes([0x80 | op, 0xff]) + struct.pack(">Q", n)
    return h + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def quietly(f, *a):
    try:
        f(*a)
    except OSError:
        pass

def echo_wave(src):
    held = []
    for _ in range(100):
        try:
            s, ok = ws_upgrade(src, "/echo", AUTH)
            if ok:
                s.sendall(frame(2, b"", 16 << 20))
            held.append(s)
        except OSError:
            pass
    time.sleep(2)
    for s in held:
        s.close()

def ping_flood(src):
    s, ok = ws_upgrade(src, "/", AUTH)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(2)
    ping = frame(9, bytes(125)) * 64
    t0 = time.time()
    try:
        while time.time() - t0 < 2:
            s.sendall(ping)
    except OSError:
        pass
    time.sleep(idle / 2)
    s.close()

def squat(src):
    held = []
    for _ in range(16):
        try:
            s, ok = ws_upgrade(src, "/", AUTH)
            req = {"type": "test", "version": 1, "cookie": os.urandom(12).hex(), "direction": "download",
                   "protocol": "tcp", "time": 10, "length": 65536, "parallel": 1, "interval": 1}
            s.sendall(frame(1, json.dumps(req).encode()))
            held.append(s)
        except OSError:
            pass
    time.sleep(12)
    for s in held:
        s.close()

def guess_tokens(src):
    for i in range(10):
        if stop.is_set():
            return
        try:
            s, _ = ws_upgrade(src, "/echo", f"Authorization: Bearer wrong-{i}\r\n")
            s.close()
        except OSError:
            pass

def bad_first_messages(src):
    for msg in (frame(2, b'{"type":"test"}'), frame(1, b"hello"), frame(1, b'{"no":"type"}')):
        s, ok = ws_upgrade(src, "/", AUTH)
        s.sendall(msg)
        s.settimeout(3)
        try:
            s.recv(256)
        except OSError:
            pass
        s.close()

def trace_burst(src):
    def one():
        s, ok = ws_upgrade(src, "/", AUTH)
        req = {"type": "trace", "version": 1, "proto": "udp", "max_hops": 8, "queries": 1, "timeout": 0.2}
        s.sendall(frame(1, json.dumps(req).encode()))
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    ts = [threading.Thread(target=quietly, args=(one,)) for _ in range(50)]
    [t.start() for t in ts]
    [t.join() for t in ts]

ATTACKS = [echo_wave, ping_flood, squat, guess_tokens, bad_first_messages, trace_burst]
attack_runs = {a.__name__: 0 for a in ATTACKS}

def attacker(attack, src):
    while not stop.is_set():
        quietly(attack, src)
        attack_runs[attack.__name__] += 1
        stop.wait(2)

def slowloris(src, count):
    conns = []
    while not stop.is_set():
        while len(conns) < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(src, 0))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                conns.append(s)
            except OSError:
                stop.wait(1)
        alive = []
        for s in conns:
            try:
                s.sendall(b"X-a: b\r\n")
                alive.append(s)
            except OSError:
                s.close()
        conns = alive
        stop.wait(3)
    for s in conns:
        s.close()

# ---- the run ----

time.sleep(1)
base = figures()
print(f"wperf soak on loopback: {soak_time:g} s of 64 mixed clients, then {seq_n} sequential tests; "
      f"200 slowloris and the attacks throughout; --idle-timeout {idle:g}")
print(f"baseline: RSS {base[0]/1024:.1f} MB, {base[2]} file descriptors")
threading.Thread(target=sampler, daemon=True).start()
background = [threading.Thread(target=slowloris, args=(f"127.0.60.{i+1}", 20)) for i in range(10)]
background += [threading.Thread(target=attacker, args=(a, f"127.0.50.{i+1}")) for i, a in enumerate(ATTACKS)]
[t.start() for t in background]

t0 = time.time()
until = t0 + soak_time
workers = [threading.Thread(target=worker, args=(f"127.0.20.{i // 4 + 1}", until)) for i in range(64)]
[t.start() for t in workers]
[t.join() for t in workers]
phase1 = time.time() - t0
during = figures()

t1 = time.time()
quick = [["-n", "1M"], ["-n", "1M", "-R"], ["-k", "64", "-l", "16K", "--bidir"]]
for i in range(seq_n):
    client("127.0.30.1", quick[i % len(quick)], "phase2")
phase2 = time.time() - t1

stop.set()
[t.join() for t in background]
settled_at = time.time()
time.sleep(idle + 1)
after = figures()

print(f"phase 1: {stats['phase1_ok']} tests completed, {stats['phase1_failed']} failed in {phase1:.0f} s")
print(f"phase 2: {stats['phase2_ok']} tests completed, {stats['phase2_failed']} failed in {phase2:.0f} s")
print(f"attacks run: " + ", ".join(f"{k} {v}" for k, v in attack_runs.items()))
print(f"server peak: RSS {peak['rss']/1024:.1f} MB, {peak['fds']} file descriptors")
print(f"at the end of phase 1: RSS {during[0]/1024:.1f} MB, {during[2]} file descriptors")
print(f"{idle + 1:g} s after the load stopped: RSS {after[0]/1024:.1f} MB, {after[2]} file descriptors "
      f"(baseline {base[0]/1024:.1f} MB, {base[2]})")
turned = sum("turned away" in l for l in server_log)
print(f"server log: {len(server_log)} lines ({turned} for connections turned away)")
for f in failures[:10]:
    print("failed:", f)
server.terminate()
server.wait()
sys.exit(1 if stats["phase1_failed"] + stats["phase2_failed"] else 0)
PY
