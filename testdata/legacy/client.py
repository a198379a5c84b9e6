#!/usr/bin/python3
"""A small client of the original wperf protocol, written for wperf's tests
from the protocol's rules alone. It runs one test against a server and
prints one JSON line with what it saw.

    client.py --url ws://HOST:PORT/ --mode upload|reverse|bidir|udp|ping|trace
              [--token T] [-t SEC] [-P N] [--rate MBITS] [--count N]
              [--style bare|json]
"""

import argparse
import asyncio
import json
import struct
import sys
import time

import websockets

CHUNK = b"\0" * 65536
DATAGRAM = 1400


def request_for(mode, style):
    """The test request: a bare word, as the older clients sent, or the
    newer clients' JSON."""
    if mode == "udp":
        return "UDP"
    if style == "json":
        return json.dumps({"mode": mode, "simulation_options": {}})
    return mode.upper()


async def send_data(ws, seconds, stream):
    seq = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        message = struct.pack("!Q", seq) + CHUNK
        await ws.send(message)
        stream["sent"] += len(message)
        seq += 1
    await ws.send("EOT_C")


async def receive_data(ws, seconds, stream):
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=left)
        except asyncio.TimeoutError:
            return
        if message == "EOT_S":
            stream["eot"] = True
            return
        if isinstance(message, bytes):
            stream["received"] += len(message)


async def send_datagrams(ws, seconds, mbits, stream):
    gap = DATAGRAM * 8 / (mbits * 1e6)
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < seconds:
        head = struct.pack("!QQ", seq, time.time_ns())
        await ws.send(head + b"\0" * (DATAGRAM - len(head)))
        seq += 1
        due = start + seq * gap
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    stream["sent_packets"] = seq
    await ws.send("EOT_C")
    stream["report"] = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


async def one_stream(args):
    stream = {"sent": 0, "received": 0, "eot": False}
    try:
        # close_timeout: an old client stops reading before it closes, and
        # would wait out its library's default timeouts otherwise.
        async with websockets.connect(args.url, max_size=2 ** 24, close_timeout=1) as ws:
            if args.token:
                await ws.send(args.token)
            if args.mode == "ping":
                await ws.send(json.dumps({"command": "ping"}))
                stream["pongs"] = await ping(ws, args.count)
            elif args.mode == "trace":
                await ws.send(json.dumps({"command": "reverse_traceroute"}))
                stream["hops"], stream["errors"] = await trace(ws)
            else:
                await ws.send(request_for(args.mode, args.style))
                await run_test(ws, args, stream)
    except websockets.exceptions.ConnectionClosed as e:
        stream["close_code"] = e.code
        stream["close_reason"] = e.reason
    return stream


async def run_test(ws, args, stream):
    if args.mode == "upload":
        await send_data(ws, args.time, stream)
    elif args.mode == "reverse":
        await receive_data(ws, args.time, stream)
    elif args.mode == "bidir":
        await asyncio.gather(send_data(ws, args.time, stream), receive_data(ws, args.time + 5, stream))
    elif args.mode == "udp":
        await send_datagrams(ws, args.time, args.rate, stream)


async def ping(ws, count):
    rtts = []
    for seq in range(count):
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "ping", "seq": seq}))
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            if answer.get("type") == "pong" and answer.get("seq") == seq:
                break
        rtts.append((time.monotonic() - sent) * 1000)
        await asyncio.sleep(0.1)
    return rtts


async def trace(ws):
    hops, errors = [], []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
        if message.get("type") == "hop":
            hops.append(message["data"])
        elif message.get("type") == "error":
            errors.append(message["message"])
        elif message.get("type") == "end":
            return hops, errors


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--mode", required=True, choices=["upload", "reverse", "bidir", "udp", "ping", "trace"])
    p.add_argument("--token")
    p.add_argument("-t", "--time", type=float, default=1)
    p.add_argument("-P", "--parallel", type=int, default=1)
    p.add_argument("--rate", type=float, default=1, help="UDP Mbit/s per stream")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--style", choices=["bare", "json"], default="bare")
    args = p.parse_args()
    streams = await asyncio.gather(*(one_stream(args) for _ in range(args.parallel)))
    print(json.dumps({"mode": args.mode, "streams": streams}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
