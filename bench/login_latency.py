#!/usr/bin/env python3
# bench/login_latency.py BINARY...: login p50 of release authgate binaries side by side (plaintext,
# embedded store, default argon2 cost): each started, one user registered, then 6 rounds of 10
# sequential logins, the binaries taking turns. ROUNDS=6 rounds; SPACING=0 seconds of quiet before
# each login (SPACING=1.5 makes every login the first after an idle spell: with the default
# password.memory_idle_timeout, each then maps a fresh argon2 block).
import json, os, subprocess, sys, time, urllib.request, tempfile, socket, statistics
def port():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
def post(url, body):
    req=urllib.request.Request(url, data=json.dumps(body).encode(), headers={'content-type':'application/json'})
    try: return urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e: return e.code
def start(binary):
    d=tempfile.mkdtemp(); p=port(); a=port(); b=port()
    open(f'{d}/g.toml','w').write(f'[server]\nlisten="127.0.0.1:{p}"\nplaintext=true\n[admin]\nlisten="127.0.0.1:{a}"\n[upstream]\nurl="http://127.0.0.1:{b}"\n[store]\nurl="sqlite://{d}/a.db?mode=rwc"\n[log]\nlevel="warn"\n')
    env=dict(os.environ, JWT_SECRET_KEY='bench-only-hs256-secret-0123456789abcdef')
    proc=subprocess.Popen([binary,'--config',f'{d}/g.toml'],env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    for _ in range(200):
        try: urllib.request.urlopen(f'http://127.0.0.1:{a}/healthz',timeout=1); break
        except Exception: time.sleep(0.05)
    base=f'http://127.0.0.1:{p}/api/auth'
    assert post(base+'/register',{'username':'alice','password':'a long password 1','email':'a@example.com'}) in (200,201)
    return proc, base
def cpu_ms(pid):
    f=open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
    return (int(f[11])+int(f[12]))*1000/os.sysconf('SC_CLK_TCK')
gws=[start(b) for b in sys.argv[1:]]
cpu0={b:cpu_ms(proc.pid) for b,(proc,_) in zip(sys.argv[1:],gws)}
lat={b:[] for b in sys.argv[1:]}
ROUNDS=int(os.environ.get('ROUNDS','6')); SPACING=float(os.environ.get('SPACING','0'))
for r in range(ROUNDS):
    for b,(proc,base) in zip(sys.argv[1:],gws):
        for _ in range(10):
            time.sleep(SPACING)
            t=time.perf_counter(); assert post(base+'/login',{'username':'alice','password':'a long password 1'})==200
            lat[b].append((time.perf_counter()-t)*1000)
cpu={b:(cpu_ms(proc.pid)-cpu0[b])/len(lat[b]) for b,(proc,_) in zip(sys.argv[1:],gws)}
for (proc,_) in gws: proc.terminate()
first=None
for b in sys.argv[1:]:
    p50=statistics.median(lat[b]); first=first or p50
    print(f'{b}: login p50 {p50:.1f} ms over {len(lat[b])} logins ({ROUNDS} alternating rounds of 10, {SPACING} s apart); ratio to the first {p50/first:.3f}; CPU {cpu[b]:.1f} ms per login')
