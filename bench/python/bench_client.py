#!/usr/bin/env python3
"""Benchmark of the Python client (registrar_client) against the C++
registrar-bench on the same server in the same run, and of the example
gateway's added latency per message. A benchmark program, not a test.

    PYTHONPATH=build/client/python /usr/bin/python3 \
        bench/python/bench_client.py --build build [--duration 5] \
        [--out bench/results/python-client-DATE.txt]

- OpenContext calls/s and p50/p99 from one asyncio process (one AsyncClient,
  one channel) at 1, 16 and 256 concurrent sessions, then registrar-bench
  --workload=open-context at the same concurrency (C++ callback client, one
  channel). Both: 1,000 owners, 90% of calls name the owner's last thread.
- The gateway: one WebSocket client sends messages one at a time (and 16 at
  once) through examples/gateway/gateway.py: a message the gateway answers
  without calling Registrar (a malformed one), and a real one (OpenContext).
  The difference is what the Registrar call adds to a message's round trip.

The server is started here (memory store unless --server-arg says
otherwise) pinned to CPU 1; clients and the gateway run on CPU 0.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "examples/gateway"))

import websockets  # noqa: E402

import registrar_client as rc  # noqa: E402
import tokens  # noqa: E402

OWNERS = 1000
REUSE = 0.9


TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_s():
    """CPU seconds all CPUs spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def process_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class OtherCpu:
    """CPU used by processes other than this benchmark's (this process,
    its children, the server, the gateway) over a row, in % of one CPU."""

    def __init__(self, pids):
        self.pids = pids
        self.start = self._sample()

    def _sample(self):
        t = os.times()
        ours = (t.user + t.system + t.children_user + t.children_system +
                sum(process_cpu_s(p) for p in self.pids))
        return time.monotonic(), machine_busy_s(), ours

    def percent(self):
        t1, busy1, ours1 = self._sample()
        t0, busy0, ours0 = self.start
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (t1 - t0) * 100


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1,
                             int(q * len(sorted_values)))]


def summary(latencies, seconds, cpu):
    lat = sorted(latencies)
    n = len(lat)
    return {"calls": n, "calls_per_s": n / seconds,
            "p50_us": percentile(lat, 0.50) * 1e6,
            "p99_us": percentile(lat, 0.99) * 1e6,
            "client_cpu_us_per_call": cpu / n * 1e6 if n else 0}


def start_server(build, args, tmp):
    port_file = os.path.join(tmp, "ports")
    proc = subprocess.Popen(
        ["taskset", "-c", "1",
         os.path.join(build, "service/server/registrar"),
         "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
         f"--port_file={port_file}", f"--data_dir={tmp}/data", *args],
        stdout=open(os.path.join(tmp, "server.log"), "wb"),
        stderr=subprocess.STDOUT)
    for _ in range(500):
        if os.path.exists(port_file):
            text = open(port_file).read()
            lines = dict(line.split("=", 1) for line in text.split())
            if "grpc" in lines:
                return proc, lines["grpc"]
        time.sleep(0.02)
    raise SystemExit("registrar did not start")


async def python_open_context(address, sessions, warmup, duration,
                              profile=False):
    owners = [rc.owner("bench", f"owner-{i}") for i in range(OWNERS)]
    last_thread = [""] * OWNERS
    latencies = []
    counter = [0]
    measuring = [False]
    stop_at = [float("inf")]
    async with rc.AsyncClient(address, deadline=10.0) as client:

        async def session():
            while time.perf_counter() < stop_at[0]:
                i = counter[0] % OWNERS
                counter[0] += 1
                thread = last_thread[i] if random.random() < REUSE else ""
                t0 = time.perf_counter()
                ctx = await client.open_context(owners[i], thread_id=thread)
                if measuring[0]:
                    latencies.append(time.perf_counter() - t0)
                last_thread[i] = ctx.thread_id

        tasks = [asyncio.ensure_future(session()) for _ in range(sessions)]
        await asyncio.sleep(warmup)
        profiler = cProfile.Profile() if profile else None
        measuring[0] = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        stop_at[0] = t0 + duration
        await asyncio.gather(*tasks)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    result = summary(latencies, elapsed, cpu)
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(12)
        result["profile"] = out.getvalue()
    return result


def cpp_open_context(build, address, sessions, warmup, duration):
    out = subprocess.run(
        ["taskset", "-c", "0",
         os.path.join(build, "bench/programs/registrar-bench"),
         f"--target={address}", "--workload=open-context",
         f"--concurrency={sessions}", f"--owners={OWNERS}", f"--reuse={REUSE}",
         f"--warmup={warmup}s", f"--duration={duration}s"],
        check=True, capture_output=True, text=True).stdout
    line = json.loads(out.strip().splitlines()[-1])
    return {"calls": line["calls"], "calls_per_s": line["ok_per_s"],
            "p50_us": line["p50_us"], "p99_us": line["p99_us"],
            "client_cpu_us_per_call":
                line["client_cpu_s"] / max(1, line["calls"]) * 1e6,
            "errors": line["errors"]}


async def gateway_round_trips(port, secret, sessions, warmup, duration,
                              valid):
    latencies = []
    measuring = [False]
    stop_at = [float("inf")]

    async def session(i):
        token = tokens.mint(secret, "bench", f"gw-user-{i}")
        async with websockets.connect(
                f"ws://127.0.0.1:{port}/", compression=None,
                extra_headers={"Authorization": "Bearer " + token}) as ws:
            await ws.recv()  # hello
            thread = ""
            while time.perf_counter() < stop_at[0]:
                message = (json.dumps({"text": "hi", "thread_id": thread})
                           if valid else "not json")
                t0 = time.perf_counter()
                await ws.send(message)
                reply = json.loads(await ws.recv())
                if measuring[0]:
                    latencies.append(time.perf_counter() - t0)
                if valid:
                    assert reply["type"] == "reply", reply
                    thread = reply["thread_id"]

    tasks = [asyncio.ensure_future(session(i)) for i in range(sessions)]
    await asyncio.sleep(warmup)
    measuring[0] = True
    t0 = time.perf_counter()
    stop_at[0] = t0 + duration
    await asyncio.gather(*tasks)
    return summary(latencies, time.perf_counter() - t0, 0)


def start_gateway(address, tmp):
    secret = os.urandom(24).hex().encode()
    secret_file = os.path.join(tmp, "secret")
    open(secret_file, "wb").write(secret)
    port_file = os.path.join(tmp, "gw.port")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable,
         os.path.join(SOURCE, "examples/gateway/gateway.py"),
         "--listen=127.0.0.1:0", f"--registrar={address}",
         f"--token-secret-file={secret_file}", "--lease-ttl=30",
         f"--port-file={port_file}"],
        stdout=open(os.path.join(tmp, "gateway.log"), "wb"),
        stderr=subprocess.STDOUT, env=dict(os.environ))
    for _ in range(500):
        if os.path.exists(port_file):
            return proc, int(open(port_file).read()), secret
        time.sleep(0.02)
    raise SystemExit("gateway did not start")


def row(name, sessions, r, other, cpu=True):
    text = (f"| {name} | {sessions} | {r['calls_per_s']:,.0f} | "
            f"{r['p50_us']:,.0f} | {r['p99_us']:,.0f} |")
    if cpu:
        text += f" {r['client_cpu_us_per_call']:,.0f} |"
    return text + f" {other:.0f} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--sessions", default="1,16,256")
    parser.add_argument("--server-arg", action="append",
                        default=None, help="default: --store=memory")
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args()
    server_args = args.server_arg or ["--store=memory"]
    os.sched_setaffinity(0, {0})
    lines = []

    def emit(text=""):
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="pybench-") as tmp:
        server, address = start_server(args.build, server_args, tmp)
        try:
            now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            emit(f"# Python client benchmark, {now}")
            emit(f"# host: {platform.node()}, {os.cpu_count()} CPUs, "
                 f"{platform.platform()}, Python {platform.python_version()}, "
                 f"grpcio {__import__('grpc').__version__}")
            emit(f"# server: registrar {' '.join(server_args)} on CPU 1; "
                 f"clients on CPU 0; {args.duration:g} s per row after "
                 f"{args.warmup:g} s warm-up; load average at start "
                 f"{os.getloadavg()[0]:.2f}")
            emit()
            emit("OpenContext, closed loop, 1,000 owners, 90% thread reuse:")
            emit()
            emit("| client | sessions | calls/s | p50 µs | p99 µs | "
                 "client CPU µs/call | other_cpu% |")
            emit("|---|---|---|---|---|---|---|")
            profile = None
            for sessions in [int(s) for s in args.sessions.split(",")]:
                other = OtherCpu([server.pid])
                py = asyncio.run(python_open_context(
                    address, sessions, args.warmup, args.duration))
                emit(row("Python registrar_client (grpc.aio)", sessions, py,
                         other.percent()))
                other = OtherCpu([server.pid])
                cpp = cpp_open_context(args.build, address, sessions,
                                       args.warmup, args.duration)
                emit(row("C++ registrar-bench", sessions, cpp,
                         other.percent()))
            profile = asyncio.run(python_open_context(
                address, 16, args.warmup, min(args.duration, 3),
                profile=True))["profile"]

            gateway, port, secret = start_gateway(address, tmp)
            try:
                emit()
                emit("Gateway (examples/gateway, one process on CPU 0 beside "
                     "the WebSocket clients): round trip per message")
                emit()
                emit("| message | sessions | msgs/s | p50 µs | p99 µs | "
                     "other_cpu% |")
                emit("|---|---|---|---|---|---|")
                for sessions in (1, 16):
                    for valid, name in ((False, "answered without Registrar"),
                                        (True, "OpenContext + reply")):
                        other = OtherCpu([server.pid, gateway.pid])
                        r = asyncio.run(gateway_round_trips(
                            port, secret, sessions, args.warmup,
                            args.duration, valid))
                        emit(row(name, sessions, r, other.percent(),
                                 cpu=False))
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
            emit()
            emit(f"# load average at the end {os.getloadavg()[0]:.2f}")
            emit()
            emit("Python client profile (16 sessions, cProfile, by own time):")
            emit("```")
            emit(profile.strip())
            emit("```")
        finally:
            server.terminate()
            server.wait(timeout=30)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
