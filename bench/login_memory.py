#!/usr/bin/env python3
# bench/login_memory.py BINARY...: RSS of a release authgate (plaintext, embedded SQLite store,
# default argon2 cost and hash_concurrency) at start, after one register, after 10 logins one
# after another, after 100 logins 10 at a time, and 5 s later. Each binary in turn, one run.
import json, os, subprocess, sys, time, urllib.request, concurrent.futures, tempfile, socket
def port():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
def rss(pid):
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmRSS'): return int(l.split()[1])/1024
def post(url, body):
    req=urllib.request.Request(url, data=json.dumps(body).encode(), headers={'content-type':'application/json'})
    try:
        return urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e: return e.code
def run(binary):
    d=tempfile.mkdtemp(); p=port(); a=port(); b=port()
    cfg=f'''[server]\nlisten="127.0.0.1:{p}"\nplaintext=true\n[admin]\nlisten="127.0.0.1:{a}"\n[upstream]\nurl="http://127.0.0.1:{b}"\n[store]\nurl="sqlite://{d}/a.db?mode=rwc"\n[log]\nlevel="warn"\n'''
    open(f'{d}/g.toml','w').write(cfg)
    env=dict(os.environ, JWT_SECRET_KEY='bench-only-hs256-secret-0123456789abcdef')
    proc=subprocess.Popen([binary,'--config',f'{d}/g.toml'],env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{a}/healthz',timeout=1); break
        except Exception: time.sleep(0.05)
    time.sleep(0.5)
    out={'start':rss(proc.pid)}
    base=f'http://127.0.0.1:{p}/api/auth'
    assert post(base+'/register',{'username':'alice','password':'a long password 1','email':'a@example.com'}) in (200,201)
    out['1 register']=rss(proc.pid)
    for _ in range(10): assert post(base+'/login',{'username':'alice','password':'a long password 1'})==200
    out['10 logins']=rss(proc.pid)
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        codes=list(ex.map(lambda _: post(base+'/login',{'username':'alice','password':'a long password 1'}), range(100)))
    out['100 logins, 10 at a time']=rss(proc.pid)
    time.sleep(5)
    out['5 s later']=rss(proc.pid)
    proc.terminate(); proc.wait()
    return out, codes.count(200)
for b in sys.argv[1:]:
    o,ok=run(b)
    print(b, ' | '.join(f'{k}: {v:.1f} MiB' for k,v in o.items()), f'(burst: {ok}/100 answered 200)')
