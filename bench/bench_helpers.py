#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only). Not meant to be run by hand.

    ports N                      N free loopback TCP ports, one a line
    jwt SECRET SUB               an HS256 JWT {sub, iat, exp=now+3600} signed with SECRET
    h2log FILE                   "count p50_ms p99_ms non2xx" from an h2load --log-file
    wrk FILE                     "rps p50_ms p99_ms non2xx socket_errors" from `wrk --latency` output
    h2load FILE                  "rps failed errored 4xx 5xx runs" from h2load summaries
    report RESULTS LATENCY RATE  the markdown tables, ratios and targets (medians over rounds)
    startup N ADMIN_PORT -- CMD  start CMD N times; ms from spawn to GET /readyz == 200
    hold PORT N TOKEN PID...     open N TLS keep-alive connections (one request each), report RSS
    logins PORT PID N AT_ONCE S  register a user, N HTTPS logins AT_ONCE at a time; RSS before, peak,
                                 after, and S seconds later (JSON)
    sink PORT                    an HTTP/1.1 backend for the 1 GiB transfers: GET /download sends
                                 1 GiB; any other request's body is read and counted ("received N")
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cmd_ports(n):
    socks, ports = [], []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print("\n".join(map(str, ports)))


def cmd_jwt(secret, sub):
    now = int(time.time())
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    p = b64(json.dumps({"sub": sub, "iat": now, "exp": now + 3600}, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    print(f"{h}.{p}.{b64(sig)}")


def pct(sorted_vals, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(-(-q * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def cmd_h2log(path):
    lat, non2xx = [], 0
    with open(path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            status = int(parts[1])
            if not 200 <= status < 300:
                non2xx += 1
            lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    print(f"{len(lat)} {pct(lat, 50):.3f} {pct(lat, 99):.3f} {non2xx}")


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cmd_wrk(path):
    out = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    print(
        f"{rps:.1f} {to_ms(*p50.groups()):.3f} {to_ms(*p99.groups()):.3f} "
        f"{int(non2xx.group(1)) if non2xx else 0} {errors}"
    )


def cmd_h2load(path):
    """One h2load run (its own req/s, which leaves out --warm-up-time), or several back-to-back
    runs appended to one file (requests done / the sum of their "finished in" times)."""
    out = open(path).read()
    runs = re.findall(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    reqs = re.findall(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.findall(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if len(runs) == 1:
        rps = float(runs[0][2])
    else:
        seconds = sum(to_ms(v, u) for v, u, _ in runs) / 1000.0
        rps = sum(int(r[0]) for r in reqs) / seconds
    failed = sum(int(r[1]) for r in reqs)
    errored = sum(int(r[2]) for r in reqs)
    c4 = sum(int(c[0]) for c in codes)
    c5 = sum(int(c[1]) for c in codes)
    print(f"{rps:.1f} {failed} {errored} {c4} {c5} {len(runs)}")


TARGETS = ["direct", "nginx", "haproxy-jwt", "authgate-jwt", "authgate-api", "authgate-before"]
MODES = [
    ("http1", "plain HTTP/1.1 keep-alive (wrk)"),
    ("tls", "TLS 1.3 keep-alive, HTTP/1.1 (wrk)"),
    ("h2", "TLS 1.3, h2 (h2load)"),
    ("newtls", "a new connection and full TLS 1.3 handshake per request (h2load --h1 -cN -nN batches; "
               "latencies are the request's, after the handshake)"),
    ("resumed", "a new connection per request, TLS 1.3 session resumed (wrk -H 'Connection: close'; "
                "latencies after the handshake)"),
]


def load(path):
    """{(target, mode): [(rps, p50, p99), ...]} from the TSV written by run.sh."""
    rows = {}
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            _round, target, mode, rps, p50, p99 = line.split("\t")
            rows.setdefault((target, mode), []).append((float(rps), float(p50), float(p99)))
    return rows


def medians(samples):
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def cmd_report(results, latency, offered):
    rows = load(results)
    med = {k: medians(v) for k, v in rows.items()}
    n = max((len(v) for v in rows.values()), default=0)
    print(f"### Throughput and latency (median of {n} rounds; req/s range = min-max over rounds)\n")
    print("| target | mode | req/s | req/s range | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, _desc in MODES:
        for t in TARGETS:
            if (t, mode) not in med:
                continue
            rps, p50, p99 = med[(t, mode)]
            lo = min(s[0] for s in rows[(t, mode)])
            hi = max(s[0] for s in rows[(t, mode)])
            print(f"| {t} | {mode} | {rps:,.0f} | {lo:,.0f}-{hi:,.0f} | {p50:.3f} | {p99:.3f} |")
    print()
    print("Modes: " + "; ".join(f"{m} = {d}" for m, d in MODES if any(k[1] == m for k in med)) + ".\n")

    print("### Ratios of median req/s\n")
    before = any(k[0] == "authgate-before" for k in med)
    print("| mode | authgate-jwt / haproxy-jwt | authgate-jwt / nginx | authgate-api / authgate-jwt | nginx / direct |"
          + (" authgate-jwt / authgate-before |" if before else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if before else ""))
    r = lambda t, m: med.get((t, m), (0, 0, 0))[0]  # noqa: E731
    for mode, _desc in MODES:
        if not any(k[1] == mode for k in med):
            continue
        print(
            f"| {mode} | {fmt_ratio(r('authgate-jwt', mode), r('haproxy-jwt', mode))} "
            f"| {fmt_ratio(r('authgate-jwt', mode), r('nginx', mode))} "
            f"| {fmt_ratio(r('authgate-api', mode), r('authgate-jwt', mode))} "
            f"| {fmt_ratio(r('nginx', mode), r('direct', mode))} |"
            + (f" {fmt_ratio(r('authgate-jwt', mode), r('authgate-before', mode))} |" if before else "")
        )
    print()

    lat_rows = load(latency)
    lat = {k[0]: medians(v) for k, v in lat_rows.items()}
    checks = []

    def check(name, value, goal, ok):
        checks.append((name, value, goal, "met" if ok else "NOT met"))

    a, h, ng = r("authgate-jwt", "tls"), r("haproxy-jwt", "tls"), r("nginx", "tls")
    api = r("authgate-api", "tls")
    if a and h:
        check("authgate-jwt / haproxy-jwt, TLS keep-alive req/s", f"{a / h:.2f}x", ">= 1.30x", a / h >= 1.3)
    if a and ng:
        check("authgate-jwt / nginx, TLS keep-alive req/s", f"{a / ng:.2f}x", ">= 0.90x", a / ng >= 0.9)
    if a and api:
        q = api / a
        checks.append(("authgate-api / authgate-jwt, TLS keep-alive req/s", f"{q:.2f}x", "0.95x-1.05x (within 5%)",
                       "met" if 0.95 <= q <= 1.05 else "NOT met" if q < 0.95 else "API faster by > 5% (noise?)"))
    if lat:
        rate = float(offered or 0)
        print(f"### p99 at a fixed offered rate of {rate:,.0f} req/s (TLS keep-alive, HTTP/1.1, h2load --h1 --rps; "
              f"median of {max(len(v) for v in lat_rows.values())} rounds)\n")
        print("| target | achieved req/s | p50 ms | p99 ms | p99 added over direct, ms |")
        print("|---|---:|---:|---:|---:|")
        base = lat.get("direct", (0, 0, None))[2]
        for t in TARGETS:
            if t not in lat:
                continue
            rps, p50, p99 = lat[t]
            added = f"{p99 - base:+.3f}" if base is not None else "n/a"
            print(f"| {t} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {added} |")
        print()
        if base is not None and "authgate-jwt" in lat and "nginx" in lat:
            ag, nx = lat["authgate-jwt"][2] - base, lat["nginx"][2] - base
            check("p99 added over direct at 50% load: authgate-jwt vs nginx", f"{ag:+.3f} ms vs {nx:+.3f} ms",
                  "authgate <= nginx", ag <= nx)
    if checks:
        print("### Issue-6 targets\n")
        print("| check | measured | target | result |")
        print("|---|---:|---|---|")
        for c in checks:
            print("| " + " | ".join(c) + " |")


def http_status(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
        return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return 0


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_startup(n, admin_port, cmd):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    times = []
    for _ in range(int(n)):
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            while http_status(int(admin_port), "/readyz") != 200:
                if proc.poll() is not None:
                    sys.exit(f"authgate exited with {proc.returncode} before /readyz answered 200")
                if time.monotonic() - t0 > 30:
                    sys.exit("authgate: /readyz not 200 within 30 s")
                time.sleep(0.001)
            times.append((time.monotonic() - t0) * 1000)
        finally:
            stop(proc)
    print(" ".join(f"{t:.1f}" for t in times))


def tree_rss_kib(root):
    """VmRSS of root and all its descendants, in KiB."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def hold(port, n, token, pids):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    request = (f"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    before = sum(tree_rss_kib(p) for p in pids)
    gate = asyncio.Semaphore(128)
    conns, failures = [], []

    async def one():
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 30)
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                if status != 200:
                    failures.append(status)
                conns.append(writer)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
                failures.append(type(e).__name__)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    opened = time.monotonic() - t0
    await asyncio.sleep(3)
    after = sum(tree_rss_kib(p) for p in pids)
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    still_open = sum(1 for line in out.splitlines() if line.strip())
    for w in conns:
        w.close()
    print(json.dumps({
        "requested": n, "ok": len(conns), "failures": len(failures),
        "failure_kinds": sorted(set(map(str, failures)))[:5], "open_after_3s": still_open,
        "rss_before_kib": before, "rss_after_kib": after, "open_seconds": round(opened, 1),
    }))


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cmd_logins(port, pid, total, at_once, settle):
    """Register one user, then `total` logins `at_once` at a time over HTTPS; RSS (KiB) before,
    the peak (VmHWM) and RSS right after the burst, and `settle` seconds later."""
    import concurrent.futures
    import urllib.request
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    base = f"https://localhost:{port}/api/auth"
    user = {"username": "burst", "password": "a long burst password 1", "email": "burst@example.com"}

    def post(path, body):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        try:
            return urllib.request.urlopen(req, timeout=60, context=ctx).status
        except urllib.error.HTTPError as e:
            return e.code
    idle = status_kib(pid, "VmRSS")
    reg = post("/register", user)
    login = {"username": user["username"], "password": user["password"]}
    with concurrent.futures.ThreadPoolExecutor(at_once) as ex:
        codes = list(ex.map(lambda _: post("/login", login), range(total)))
    after = status_kib(pid, "VmRSS")
    hwm = status_kib(pid, "VmHWM")
    time.sleep(settle)
    print(json.dumps({"idle_kib": idle, "register": reg, "ok": codes.count(200), "total": total,
                      "after_kib": after, "hwm_kib": hwm, "settled_kib": status_kib(pid, "VmRSS")}))


async def sink_connection(reader, writer):
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:] if ":" in line)}
            if method == "GET" and target.startswith("/download"):
                size = 1 << 30
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode())
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    writer.write(chunk)
                    await writer.drain()
                continue
            received = 0
            if "content-length" in headers:
                remaining = int(headers["content-length"])
                while remaining:
                    data = await reader.read(min(remaining, 1 << 20))
                    if not data:
                        return
                    received += len(data)
                    remaining -= len(data)
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers
                        break
                    await reader.readexactly(size)
                    await reader.readexactly(2)
                    received += size
            body = f"received {received}\n".encode()
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def sink(port):
    server = await asyncio.start_server(sink_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    c = a[0]
    if c == "ports":
        cmd_ports(a[1])
    elif c == "jwt":
        cmd_jwt(a[1], a[2])
    elif c == "h2log":
        cmd_h2log(a[1])
    elif c == "wrk":
        cmd_wrk(a[1])
    elif c == "h2load":
        cmd_h2load(a[1])
    elif c == "report":
        cmd_report(a[1], a[2], a[3] if len(a) > 3 else "")
    elif c == "startup":
        cmd_startup(a[1], a[2], a[a.index("--") + 1:])
    elif c == "hold":
        asyncio.run(hold(int(a[1]), int(a[2]), a[3], [int(p) for p in a[4:]]))
    elif c == "logins":
        cmd_logins(int(a[1]), int(a[2]), int(a[3]), int(a[4]), float(a[5]))
    elif c == "sink":
        asyncio.run(sink(int(a[1])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
