#!/usr/bin/python3
"""A small server of the original wperf protocol, written for wperf's tests
from the protocol's rules alone. It prints "listening PORT", then one JSON
line per connection with what it saw.

    server.py [--port N] [--token T] [-t SEC] [--udp-limit SEC]

-t is how long it sends in reverse and bidir tests (the old servers' own
-t); a UDP test ends at the client's EOT_C or after --udp-limit seconds.
Its reverse traceroute is canned: the client's address, then a silent hop.
"""

import argparse
import asyncio
import json
import struct
import sys
import time

import websockets

CHUNK = b"\0" * 65536


def mode_of(request):
    """The rules: JSON with a mode, JSON with a command, or a bare word;
    anything unknown is an upload."""
    try:
        obj = json.loads(request)
    except (ValueError, TypeError):
        return {"UDP": "udp", "reverse": "reverse", "REVERSE": "reverse",
                "bidir": "bidir", "BIDIR": "bidir"}.get(request, "upload")
    if not isinstance(obj, dict):
        return "upload"
    if "mode" in obj:
        return mode_of(obj["mode"]) if isinstance(obj["mode"], str) else "upload"
    return {"ping": "ping", "reverse_traceroute": "trace"}.get(obj.get("command"), "upload")


class Handler:
    def __init__(self, args):
        self.args = args

    async def __call__(self, ws, path=None):
        log = {"peer": ws.remote_address[0], "received": 0, "sent": 0, "eot": False}
        try:
            if self.args.token:
                if await ws.recv() != self.args.token:
                    log["mode"] = "bad-token"
                    await ws.close(1008, "Invalid token")
                    return
            log["mode"] = mode_of(await ws.recv())
            await self.serve(ws, log)
        except websockets.exceptions.ConnectionClosed as e:
            log["closed"] = e.code
        finally:
            print(json.dumps(log), flush=True)

    async def serve(self, ws, log):
        mode = log["mode"]
        if mode == "upload":
            await self.receive(ws, log)
        elif mode == "reverse":
            await self.send(ws, log)
        elif mode == "bidir":
            await asyncio.gather(self.send(ws, log), self.receive(ws, log))
        elif mode == "udp":
            await self.udp(ws, log)
        elif mode == "ping":
            async for message in ws:
                data = json.loads(message)
                if data.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "seq": data.get("seq")}))
                    log["received"] += 1
        elif mode == "trace":
            ip = ws.remote_address[0]
            hops = [{"ttl": 1, "ip": ip, "name": "client.test", "rtt": 0.25, "country": "ZZ", "asn": "AS64500 TEST-NET"},
                    {"ttl": 2, "ip": "*", "name": "*", "rtt": -1, "country": "", "asn": ""}]
            for hop in hops:
                await ws.send(json.dumps({"type": "hop", "data": hop}))
            await ws.send(json.dumps({"type": "end"}))

    async def receive(self, ws, log):
        async for message in ws:
            if message == "EOT_C":
                log["eot"] = True
                return
            if isinstance(message, bytes):
                log["received"] += len(message)

    async def send(self, ws, log):
        end = time.monotonic() + self.args.time
        seq = 0
        try:
            while time.monotonic() < end:
                message = struct.pack("!Q", seq) + CHUNK
                await ws.send(message)
                log["sent"] += len(message)
                seq += 1
            await ws.send("EOT_S")
        except websockets.exceptions.ConnectionClosed:
            pass

    async def udp(self, ws, log):
        jitter, last_transit, highest, got, lost = 0.0, None, -1, 0, 0
        end = time.monotonic() + self.args.udp_limit
        while time.monotonic() < end:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if message == "EOT_C":
                log["eot"] = True
                break
            seq, sent_ns = struct.unpack("!QQ", message[:16])
            transit = time.time_ns() - sent_ns
            if last_transit is not None:
                jitter += (abs(transit - last_transit) - jitter) / 16
            last_transit = transit
            if seq > highest + 1:
                lost += seq - highest - 1
            highest = max(highest, seq)
            got += 1
        log["received"] = got
        report = {"jitter_ms": jitter / 1e6, "lost_packets": lost, "total_packets": got,
                  "loss_percent": 100 * lost / (highest + 1) if highest >= 0 else 0}
        await ws.send(json.dumps(report))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token")
    p.add_argument("-t", "--time", type=float, default=10)
    p.add_argument("--udp-limit", type=float, default=12)
    args = p.parse_args()
    async with websockets.serve(Handler(args), "127.0.0.1", args.port, max_size=2 ** 24) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening", port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
