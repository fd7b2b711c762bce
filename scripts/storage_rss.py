#!/usr/bin/env python3
"""Bounded RSS probe for local-storage downloads (issue 15, item 6).

Places one object of --size-mib MiB in the public bucket of a running API
(local storage backend), opens --clients concurrent downloads that read it
slowly (--rate-kib KiB/s each) for at most --seconds, samples the server's
VmRSS from /proc/<pid>/status and prints idle, peak and peak - idle.
Exits 1 when the growth reaches --limit-mib. Python 3 stdlib only.

  scripts/storage_rss.py --pid $(pgrep -n atoitalk) --media-dir ./var/media \
      --url http://127.0.0.1:8080
"""
import argparse
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def slow_download(host, port, path, rate, deadline, stats):
    try:
        s = socket.create_connection((host, port), timeout=10)
        # A small receive buffer keeps the client slow for real.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(4096)
        stats["status"].append(first.split(b"\r\n", 1)[0].decode(errors="replace"))
        chunk = max(1024, rate // 10)
        while time.monotonic() < deadline:
            data = s.recv(chunk)
            if not data:
                break
            time.sleep(0.1)
        s.close()
    except OSError as e:
        stats["errors"].append(str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--media-dir", required=True, help="the server's MEDIA_LOCAL_DIR")
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--size-mib", type=int, default=20)
    ap.add_argument("--rate-kib", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--limit-mib", type=float, default=64.0)
    a = ap.parse_args()

    key = f"rss-probe-{uuid.uuid4().hex}.bin"
    obj = os.path.join(a.media_dir, "public", key)
    with open(obj, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(a.size_mib):
            f.write(block)
    try:
        u = urllib.parse.urlparse(a.url)
        host, port = u.hostname, u.port or 80
        time.sleep(0.5)
        idle = rss_kib(a.pid)
        deadline = time.monotonic() + a.seconds
        stats = {"status": [], "errors": []}
        threads = [
            threading.Thread(
                target=slow_download,
                args=(host, port, f"/storage/public/{key}", a.rate_kib * 1024, deadline, stats),
                daemon=True,
            )
            for _ in range(a.clients)
        ]
        for t in threads:
            t.start()
        peak = idle
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(a.pid))
            time.sleep(0.25)
        for t in threads:
            t.join(timeout=5)
    finally:
        os.remove(obj)
    growth = (peak - idle) / 1024
    codes = {}
    for s in stats["status"]:
        codes[s] = codes.get(s, 0) + 1
    print(f"clients={a.clients} object={a.size_mib}MiB rate={a.rate_kib}KiB/s seconds={a.seconds}")
    print(f"statuses={codes} errors={len(stats['errors'])}")
    print(f"rss_idle_mib={idle / 1024:.1f} rss_peak_mib={peak / 1024:.1f} growth_mib={growth:.1f} (limit {a.limit_mib})")
    sys.exit(0 if growth < a.limit_mib else 1)


if __name__ == "__main__":
    main()
