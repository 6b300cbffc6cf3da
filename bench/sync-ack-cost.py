#!/usr/bin/env python3
"""Redis CPU per session of the sync's ack script: one ZREM per cleared mark inside the loop (the
script before 57ee4d6) against the current one, read from actors/redis_scripts.cpp (sync_ack:
one ZREM per 1,000).

    bench/sync-ack-cost.py redis://127.0.0.1:6379/0 [rounds]

Writes 2,000 session hashes of 512 bytes and a dirty set under the prefix "ackcost:", then for
each round and script: CONFIG RESETSTAT, 100 x (ZADD the 2,000 marks back, EVAL the ack of
2,000), and prints cmdstat_eval's usec / calls / 2,000. Deletes its keys at the end. Needs only
the Python standard library (RESP spoken directly)."""
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

PER_MARK = """local n = 0
for i = 2, #ARGV, 3 do
  local f = redis.call('HMGET', ARGV[1] .. ARGV[i], 'v', 'la')
  if (f[1] or '') == ARGV[i + 1] and (f[2] or '') == ARGV[i + 2] then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n"""



def current_ack():
    """The ack script as built: sync_ack_body in actors/redis_scripts.cpp."""
    source = Path(__file__).resolve().parent.parent / "actors" / "redis_scripts.cpp"
    m = re.search(r'sync_ack_body = R"lua\((.*?)\)lua"', source.read_text(), re.S)
    if not m:
        sys.exit(f"sync_ack_body not found in {source}")
    return m.group(1)


N = 2000
PREFIX = "ackcost:"


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, url):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379))
        self.f = self.sock.makefile("rb")
        if u.password:
            self.cmd("AUTH", u.password)
        db = (u.path or "/0").strip("/") or "0"
        self.cmd("SELECT", db)

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in b"+:":
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        return [self.read() for _ in range(int(rest))]

    def cmd(self, *args):
        self.sock.sendall(enc(*args))
        return self.read()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(commands))
        return [self.read() for _ in commands]


def main():
    r = Redis(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    r.pipeline([enc("HSET", f"{PREFIX}s:{i}", "v", "3", "la", "1700000000000", "d", "x" * 512,
                    "u", "user", "st", "A", "ca", "1", "ex", "2", "ttl", "3600", "t", "1")
                for i in range(N)])
    args = [f"{PREFIX}s:"]
    for i in range(N):
        args += [str(i), "3", "1700000000000"]
    zadd = enc("ZADD", f"{PREFIX}dirty", *[x for i in range(N) for x in ("1", str(i))])
    try:
        for name, body in [("per-mark ZREM", PER_MARK), ("current ack", current_ack())] * rounds:
            r.cmd("CONFIG", "RESETSTAT")
            ev = enc("EVAL", body, 1, f"{PREFIX}dirty", *args)
            cleared = 0
            for _ in range(100):
                r.pipeline([zadd])
                cleared += int(r.pipeline([ev])[0])
            stats = r.cmd("INFO", "commandstats").decode()
            m = re.search(r"cmdstat_eval:calls=(\d+),usec=(\d+)", stats)
            print(f"{name:14} cleared {cleared}, "
                  f"{int(m.group(2)) / int(m.group(1)) / N:.2f} us of Redis CPU per session")
    finally:
        r.pipeline([enc("DEL", f"{PREFIX}dirty")] +
                   [enc("DEL", f"{PREFIX}s:{i}") for i in range(N)])


if __name__ == "__main__":
    main()
