#!/usr/bin/env python3
"""Soak: proxied p99 and the gateway's peak RSS under wrk load, without and then with attacks
running beside it (slowloris, HTTP/2 rapid-reset bursts, a login brute force).

Loopback only, bounded in time (two phases of --seconds each) and count. Needs wrk and python's
h2 package (installed when missing) and a release build (`cargo build --release`).

    python3 bench/soak.py [--seconds 10] [--connections 16]
"""
import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "soak-secret-soak-secret-soak-secret-0123"


def ensure_tools():
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    try:
        import h2  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "h2"], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(sub):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(SECRET.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ThreadedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The gateway cancels upstream requests whose client reset them: not an error here.
        pass


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(url, token, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rate, float(p99.group(1)) * scale


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def slowloris(port, stop, sockets=200):
    """Connections that trickle a request head one byte a second and never finish it."""
    ctx, conns = tls_context(), []

    def open_one():
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=2), server_hostname="localhost")
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            conns.append(s)
        except OSError:
            pass

    for _ in range(sockets):
        open_one()
    while not stop.is_set():
        for s in list(conns):
            try:
                s.sendall(b"X")
            except OSError:
                conns.remove(s)
                open_one()
        stop.wait(1.0)
    for s in conns:
        s.close()


def rapid_reset(port, token, stop, counts):
    """HTTP/2 connections that open streams and reset them at once (CVE-2023-44487)."""
    import h2.config
    import h2.connection
    import h2.errors
    ctx = tls_context()
    ctx.set_alpn_protocols(["h2"])
    while not stop.is_set():
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=2), server_hostname="localhost")
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            s.sendall(conn.data_to_send())
            for _ in range(1000):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":path", "/x"), (":scheme", "https"), (":authority", "localhost"), ("authorization", f"Bearer {token}")], end_stream=True)
                conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                s.sendall(conn.data_to_send())
                counts["resets"] += 1
            s.close()
        except Exception:
            counts["cut"] += 1
            time.sleep(0.05)


def brute_force(port, stop, counts):
    """Wrong-password logins as fast as the gateway answers them."""
    import http.client
    ctx = tls_context()
    body = json.dumps({"username": "victim", "password": "wrong password!!"})
    while not stop.is_set():
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
            c.request("POST", "/api/auth/login", body, {"content-type": "application/json"})
            status = c.getresponse().status
            counts[status] = counts.get(status, 0) + 1
            c.close()
        except Exception:
            counts["error"] = counts.get("error", 0) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    ensure_tools()
    binary = os.path.join(ROOT, "target", "release", "authgate")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    backend_port, gw_port, admin_port = free_port(), free_port(), free_port()
    backend = ThreadedServer(("127.0.0.1", backend_port), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()

    work = tempfile.mkdtemp(prefix="authgate-soak-")
    with open(os.path.join(work, "g.toml"), "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{gw_port}"
tls_handshake_timeout = "5s"
header_read_timeout = "5s"
[admin]
listen = "127.0.0.1:{admin_port}"
[tls]
cert = "cert.pem"
key = "key.pem"
self_signed_if_missing = true
[upstream]
url = "http://127.0.0.1:{backend_port}"
[jwt]
secret = "{SECRET}"
[store]
url = "sqlite://{work}/soak.db?mode=rwc"
[log]
level = "warn"
""")
    gw = subprocess.Popen([binary, "--config", "g.toml"], cwd=work, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", gw_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        token, url = jwt("soak-user"), f"https://127.0.0.1:{gw_port}/api/data"
        peak = {"value": 0}
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak["value"] = max(peak["value"], rss_kib(gw.pid))
                time.sleep(0.1)

        results = {}
        for phase in ("quiet", "attacked"):
            peak["value"], sampling = rss_kib(gw.pid), threading.Event()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            stop, counts = threading.Event(), {"resets": 0, "cut": 0}
            attackers = []
            if phase == "attacked":
                attackers = [
                    threading.Thread(target=slowloris, args=(gw_port, stop), daemon=True),
                    threading.Thread(target=rapid_reset, args=(gw_port, token, stop, counts), daemon=True),
                    threading.Thread(target=brute_force, args=(gw_port, stop, counts), daemon=True),
                ]
                for t in attackers:
                    t.start()
                time.sleep(1)
            rate, p99 = wrk(url, token, args.seconds, args.connections)
            stop.set()
            for t in attackers:
                t.join(timeout=5)
            sampling.set()
            sampler.join()
            results[phase] = (rate, p99, peak["value"] / 1024, dict(counts))

        print(f"authgate soak ({args.seconds}s per phase, wrk -t1 -c{args.connections}, TLS keep-alive, loopback)")
        for phase, (rate, p99, rss, counts) in results.items():
            print(f"  {phase:9} {rate:>9.0f} req/s   p99 {p99:7.2f} ms   gateway peak RSS {rss:6.1f} MiB")
        attacks = results["attacked"][3]
        logins = {k: v for k, v in attacks.items() if isinstance(k, int)}
        print(f"  attacks: 200 slowloris connections; {attacks['resets']} h2 stream resets ({attacks['cut']} connections cut by the gateway); logins answered {logins}")
    finally:
        gw.terminate()
        gw.wait(timeout=35)
        backend.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
