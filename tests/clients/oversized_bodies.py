"""Send bodies the gateway refuses before reading them, as a Python program would, and report
what came back. Usage: oversized_bodies.py BASE_URL CA_FILE

Prints one JSON object: for each case, the status and the JSON body the client read, or the
exception it raised instead (a connection reset, SSLEOFError, ...).
"""

import json
import sys

import requests

base, ca = sys.argv[1], sys.argv[2]
cases = {
    # 100 KB: over the auth API's 64 KiB.
    "register_100k": ("/api/auth/register", 100_000),
    # 8 MiB.
    "login_8m": ("/api/auth/login", 8 << 20),
}
out = {}
for name, (path, size) in cases.items():
    body = b'{"username":"' + b"x" * size + b'"}'
    try:
        r = requests.post(
            base + path,
            data=body,
            headers={"Content-Type": "application/json"},
            verify=ca,
            timeout=30,
        )
        out[name] = {"status": r.status_code, "json": r.json()}
    except Exception as e:  # noqa: BLE001 - the point is to report whatever went wrong
        out[name] = {"error": type(e).__name__ + ": " + str(e)[:300]}
print(json.dumps(out))
