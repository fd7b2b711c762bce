#!/usr/bin/env python3
"""Bounded slowloris check for the listener (issue 15, A1).

Starts `atoitalk serve` (own database `atoitalk_slowloris`, Redis prefix
`slowloris:`) with a chosen file-descriptor limit, holds N hostile
connections against it from several loopback source addresses (each either
silent or trickling one header line per second, reconnecting whenever the
server closes it), and meanwhile asks GET /healthz from 127.0.0.1 ten times a
second on fresh connections. Prints healthz success and latency, how long the
server kept hostile connections, how many were refused at the per-IP cap, and
the server's CPU use while under attack (a hot accept loop shows as ~100 %).

    scripts/slowloris.py --bin target/release/atoitalk --conns 2000 --ips 8
    scripts/slowloris.py --conns 2000 --ips 8 --fd-limit 1024
    scripts/slowloris.py --conns 2000 --ips 1          # one address: the cap

Needs PostgreSQL and Redis as for the tests (scripts/services.sh).
"""

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/atoitalk")
    p.add_argument("--port", type=int, default=18480)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--ips", type=int, default=8, help="source addresses 127.0.1.1..")
    p.add_argument("--secs", type=int, default=30, help="how long the attack lasts")
    p.add_argument("--mode", choices=["silent", "trickle"], default="trickle")
    p.add_argument("--fd-limit", type=int, default=0, help="server RLIMIT_NOFILE (0 = inherit)")
    p.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server")
    return p.parse_args()


def start_server(a):
    db = "atoitalk_slowloris"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"],
                   check=True, env={**os.environ, "PGPASSWORD": "postgres"})
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db}"],
                   check=True, env={**os.environ, "PGPASSWORD": "postgres"})
    env = {**os.environ, "APP_PORT": str(a.port), "DB_HOST": "127.0.0.1", "DB_NAME": db,
           "REDIS_HOST": "127.0.0.1", "REDIS_KEY_PREFIX": "slowloris:",
           "JWT_SECRET": "slowloris-secret-0123456789", "OTP_SECRET": "slowloris-secret-0123456789",
           "RUST_LOG": "warn"}
    for kv in a.env:
        k, v = kv.split("=", 1)
        env[k] = v

    def limit():
        if a.fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (a.fd_limit, a.fd_limit))

    proc = subprocess.Popen([a.bin, "serve"], env=env, preexec_fn=limit,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def healthz(port, timeout=5.0):
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(r.read(), timeout)
        w.close()
        return data.startswith(b"HTTP/1.1 200"), time.monotonic() - t0
    except (OSError, asyncio.TimeoutError):
        return False, time.monotonic() - t0


def healthz_blocking(port, timeout=5.0):
    """The probe runs in its own thread with plain sockets, so the attack's
    event loop cannot delay it."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.1 200"), time.monotonic() - t0
    except OSError:
        return False, time.monotonic() - t0


def probe(pid, port, secs):
    lat, ok_n, total, fds = [], 0, 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        ok, dt = healthz_blocking(port)
        total += 1
        if ok:
            ok_n += 1
            lat.append(dt)
        fds.append(fd_count(pid))
        time.sleep(0.1)
    return lat, ok_n, total, fds


class Stats:
    def __init__(self):
        self.held_for = []      # seconds a hostile connection stayed open
        self.refused = 0        # answered 429 at the per-IP cap
        self.connect_errors = 0


async def hostile(i, a, stats, stop):
    src = f"127.0.1.{i % a.ips + 1}"
    while not stop.is_set():
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", a.port, local_addr=(src, 0)), 3.0)
        except (OSError, asyncio.TimeoutError):
            stats.connect_errors += 1
            await asyncio.sleep(0.5)
            continue
        t0 = time.monotonic()
        if a.mode == "trickle":
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(r.read(4096), 1.0)
                if data.startswith(b"HTTP/1.1 429"):
                    stats.refused += 1
                if not data or data.startswith(b"HTTP/1.1 429"):
                    break
            except asyncio.TimeoutError:
                if a.mode == "trickle":
                    n += 1
                    w.write(f"X-Slow-{n}: y\r\n".encode())
            except OSError:
                break
        stats.held_for.append(time.monotonic() - t0)
        w.close()
        if stop.is_set():
            return
        await asyncio.sleep(1.0)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else float("nan")


async def main():
    a = parse()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = start_server(a)
    try:
        for _ in range(300):
            ok, _ = await healthz(a.port, 1.0)
            if ok:
                break
            await asyncio.sleep(0.1)
        else:
            sys.exit("server did not start: " + proc.stderr.read(2000).decode(errors="replace"))
        base = [(await healthz(a.port))[1] for _ in range(50)]
        stats, stop = Stats(), asyncio.Event()
        tasks = [asyncio.create_task(hostile(i, a, stats, stop)) for i in range(a.conns)]
        await asyncio.sleep(2)
        cpu0, t0 = cpu_secs(proc.pid), time.monotonic()
        lat, ok_n, total, fds = await asyncio.to_thread(probe, proc.pid, a.port, a.secs)
        cpu = (cpu_secs(proc.pid) - cpu0) / (time.monotonic() - t0)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        alive = proc.poll() is None
        ms = lambda s: f"{s * 1000:.1f} ms"
        print(f"\n| figure ({a.conns} {a.mode} connections from {a.ips} address(es), "
              f"fd limit {a.fd_limit or 'inherited'}, {a.secs} s) | measured |")
        print("| --- | --- |")
        print(f"| /healthz before the attack, p50 / p99 | {ms(pct(base, .5))} / {ms(pct(base, .99))} |")
        print(f"| /healthz during, answered | {ok_n}/{total} |")
        if lat:
            print(f"| /healthz during, p50 / p99 / max | {ms(pct(lat, .5))} / {ms(pct(lat, .99))} / {ms(max(lat))} |")
        if stats.held_for:
            print(f"| hostile connection lifetime, p50 / max | {pct(stats.held_for, .5):.1f} s / {max(stats.held_for):.1f} s |")
        print(f"| hostile connections opened / refused 429 / connect errors | {len(stats.held_for)} / {stats.refused} / {stats.connect_errors} |")
        print(f"| server open fds during, median / max | {statistics.median(fds):.0f} / {max(fds)} |")
        print(f"| server CPU during the attack | {cpu * 100:.0f} % of one core |")
        print(f"| server still running | {alive} |")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    asyncio.run(main())
