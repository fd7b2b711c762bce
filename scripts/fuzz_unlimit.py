#!/usr/bin/env python3
"""Deletes the fuzzing server's rate-limit counters ten times a second, so
schemathesis' requests reach the handlers instead of ending as (documented)
429s. One Redis connection for the whole run (a redis-cli process per sweep
stalls under load); standard library only.

    fuzz_unlimit.py HOST PORT DB KEY_PREFIX

Runs until terminated; on SIGTERM it reports how many sweeps it made and
how many keys it deleted.
"""

import signal
import socket
import sys
import time

HOST, PORT, DB, PREFIX = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sweeps = deleted = 0


def stop(*_):
    print(f"rate-limit sweeper: {sweeps} sweeps, {deleted} counters deleted", file=sys.stderr)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
conn = socket.create_connection((HOST, PORT), timeout=5)
reader = conn.makefile("rb")


def command(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    conn.sendall(b"".join(out))
    return reply()


def reply():
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise SystemExit(f"redis error: {rest.decode()}")
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)[:-2]
        return data
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    raise SystemExit(f"unexpected redis reply {line!r}")


command("SELECT", DB)
pattern = PREFIX + "ratelimit:*"
while True:
    cursor = b"0"
    while True:
        cursor, keys = command("SCAN", cursor.decode(), "MATCH", pattern, "COUNT", 1000)
        if keys:
            deleted += int(command("DEL", *[k.decode() for k in keys]))
        if cursor == b"0":
            break
    sweeps += 1
    time.sleep(0.1)
