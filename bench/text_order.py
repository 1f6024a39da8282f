#!/usr/bin/env python3
# bench/text_order.py: the code layout of the release binary (bench/text-order.txt), from what a
# gateway actually runs.
#
# Usage:
#   bench/text_order.py [BINARY]           write bench/text-order.txt from BINARY
#                                          (default target/release/authgate)
#   bench/text_order.py --check [BINARY]   how many of the file's functions BINARY still has
#
# Why: a process's code pages are mapped from the binary as they are first run, and the kernel maps
# the 64 KiB around each one (fault-around). Start-up and the request path touch a few thousand
# functions spread over all 15 MB of text, so about 10 MiB of it ended up resident in an idle
# gateway. build.rs hands this file to the linker (lld's --symbol-ordering-file), which puts these
# functions first and together: the same code, about 4 MiB less resident.
#
# How: BINARY runs under callgrind (one Tokio worker, TLS, the embedded store, a small upstream)
# while this script drives it through start-up, /healthz, /readyz, /metrics, a register, a login, a
# sign-in page, an API token, and proxied GETs and POSTs over HTTP/1.1 and HTTP/2 with a JWT and
# an API token, refusals included; then SIGTERM, so shutdown is in too. Every function callgrind
# saw run, and the binary's symbol table holds, is written out, the most instructions first (the
# hot path lands on the fewest pages). The symbols of a fat-LTO build do not depend on their order,
# so one pass is enough. Rerun after a dependency, toolchain or profile change: stale lines are
# ignored by the linker (a function it no longer finds simply goes where it would have), so an old
# file costs resident memory, never correctness; --check says how stale it is.
#
# Needs valgrind, openssl and curl (installed with apt-get when missing, as bench/callgrind.sh
# does). About 10 s.
import collections, json, os, shutil, socket, subprocess, sys, tempfile, threading, time
import http.server, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = os.path.join(ROOT, 'bench', 'text-order.txt')
# Not a real secret: bench/run.sh's fixed HS256 key, used only on loopback.
JWT_SECRET = 'bench-only-hs256-secret-0123456789abcdef'


def die(msg):
    print(f'text_order: ERROR: {msg}', file=sys.stderr)
    sys.exit(1)


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    pkgs = {'valgrind': 'valgrind', 'openssl': 'openssl', 'curl': 'curl', 'nm': 'binutils'}
    if missing:
        subprocess.run(['apt-get', 'install', '-y', '-qq'] + [pkgs[t] for t in missing], check=True)


def text_symbols(binary):
    """Function symbols of BINARY (mangled) and their sizes."""
    out = subprocess.run(['nm', '-S', binary], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in 'tTwW':
            syms[f[3]] = int(f[1], 16)
    if not syms:
        die(f'{binary} has no symbol table (a stripped binary cannot be profiled)')
    return syms


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def answer(self):
        n = int(self.headers.get('content-length') or 0)
        self.rfile.read(n)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass


def curl(*args):
    r = subprocess.run(['curl', '-sk', '--max-time', '120', '-w', '\n%{http_code}', *args],
                       capture_output=True, text=True)
    body, _, code = r.stdout.rpartition('\n')
    return code, body


def profile(binary, work):
    """Run BINARY under callgrind through the workload; the path of callgrind's dump."""
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                    '-nodes', '-keyout', f'{work}/key.pem', '-out', f'{work}/cert.pem', '-days', '1',
                    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'],
                   check=True, capture_output=True)
    port, admin = free_port(), free_port()
    with open(f'{work}/gateway.toml', 'w') as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n'
                f'[tls]\ncert = "{work}/cert.pem"\nkey = "{work}/key.pem"\n'
                f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
                f'[upstream]\nurl = "http://127.0.0.1:{srv.server_address[1]}"\n'
                f'[store]\nurl = "sqlite://{work}/authgate.db?mode=rwc"\n'
                f'[log]\nlevel = "warn"\n')
    env = dict(os.environ, JWT_SECRET_KEY=JWT_SECRET, TOKIO_WORKER_THREADS='1')
    env.pop('RUST_LOG', None)
    dump = f'{work}/callgrind.out'
    cmd = ['valgrind', '--tool=callgrind', '--demangle=no', '--dump-instr=no', '--compress-strings=no',
           f'--callgrind-out-file={dump}', binary, '--config', f'{work}/gateway.toml']
    with open(f'{work}/stderr', 'w') as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{admin}/healthz', timeout=2)
                break
            except Exception:
                if proc.poll() is not None:
                    die(f'{binary} exited at start; see {work}/stderr')
                time.sleep(0.1)
        else:
            die(f'{binary} did not answer /healthz within 60 s under callgrind')
        base = f'https://127.0.0.1:{port}'
        json_h = ('-H', 'content-type: application/json')
        steps = []

        def expect(code, label, *args):
            got, body = curl(*args)
            steps.append(label)
            if got != code:
                die(f'{label}: {got}, not {code} (the profile would miss that path): {body[:200]}')
            return body

        expect('200', 'readyz', f'http://127.0.0.1:{admin}/readyz')
        expect('200', 'metrics', f'http://127.0.0.1:{admin}/metrics')
        user = {'username': 'alice', 'password': 'a long password 1', 'email': 'a@example.com'}
        expect('201', 'register', *json_h, '-d', json.dumps(user), f'{base}/api/auth/register')
        login = expect('200', 'login', *json_h, '-d', json.dumps({k: user[k] for k in ('username', 'password')}),
                       f'{base}/api/auth/login')
        jwt = json.loads(login)['access_token']
        bearer = ('-H', f'authorization: Bearer {jwt}')
        made = expect('201', 'token', *bearer, *json_h, '-d', '{"name":"ci"}', f'{base}/api/auth/tokens')
        api = ('-H', f'authorization: Bearer {json.loads(made)["token"]}')
        expect('200', 'me', *bearer, f'{base}/api/auth/me')
        expect('200', 'sign-in page', f'{base}/_auth/sign-in?rd=/')
        for version in ('--http1.1', '--http2'):
            for cred in (bearer, api):
                for _ in range(3):
                    expect('200', f'GET {version}', version, *cred, f'{base}/api/items?q=1')
                    expect('200', f'POST {version}', version, *cred, '-d', 'hello', f'{base}/api/items')
            expect('401', f'no credential {version}', version, f'{base}/api/items')
            expect('401', f'bad token {version}', version, '-H', 'authorization: Bearer nope', f'{base}/api/items')
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait()
        srv.shutdown()
    if not os.path.exists(dump):
        die(f'callgrind wrote no profile; see {work}/stderr')
    print(f'text_order: {len(steps)} requests profiled', file=sys.stderr)
    return dump


def self_cost(dump):
    """Instructions run in each function itself (callgrind's self cost), by mangled name."""
    cost = collections.Counter()
    fn = None
    skip = False
    with open(dump) as f:
        for line in f:
            if line.startswith('fn='):
                fn = line[3:].strip()
                cost[fn] += 0
            elif line.startswith('calls='):
                skip = True  # the next line is the call's inclusive cost, not this function's
            elif fn and line[:1] and (line[0].isdigit() or line[0] in '+-*'):
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[fn] += int(parts[1])
    return cost


def main():
    args = sys.argv[1:]
    check = '--check' in args
    args = [a for a in args if a != '--check']
    binary = os.path.abspath(args[0] if args else os.path.join(ROOT, 'target/release/authgate'))
    if not os.access(binary, os.X_OK):
        die(f'{binary}: not an executable (build it: cargo build --release --locked)')
    need('nm', 'openssl', 'curl', *([] if check else ['valgrind']))
    syms = text_symbols(binary)
    if check:
        if not os.path.exists(ORDER):
            die(f'{ORDER} is missing')
        names = [line.strip() for line in open(ORDER) if line.strip() and not line.startswith('#')]
        found = [n for n in names if n in syms]
        print(f'{len(found)} of {len(names)} functions in {os.path.relpath(ORDER, ROOT)} are in {binary} '
              f'({100 * len(found) / max(len(names), 1):.0f}%; {sum(syms[n] for n in found) / 1048576:.1f} MiB '
              f'of code laid out first)')
        return
    with tempfile.TemporaryDirectory() as work:
        cost = self_cost(profile(binary, work))
    ran = sorted((n for n in cost if n in syms), key=lambda n: (-cost[n], n))
    if len(ran) < 500:
        die(f'only {len(ran)} of the functions that ran are in the symbol table: is {binary} a release build?')
    with open(ORDER, 'w') as f:
        f.write('# The functions a gateway runs, most instructions first: the linker lays them out first\n'
                '# (build.rs). Written by bench/text_order.py; regenerate it, do not edit it.\n')
        f.write('\n'.join(ran) + '\n')
    print(f'text_order: {len(ran)} functions, {sum(syms[n] for n in ran) / 1048576:.1f} MiB of code, '
          f'written to {os.path.relpath(ORDER, ROOT)}', file=sys.stderr)


if __name__ == '__main__':
    main()
