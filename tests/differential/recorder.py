"""What the application saw: one JSON line per request, appended to the file named by DIFF_RECORD.

Each line is written with a single O_APPEND write, so lines from several workers never interleave.
The answer to every request carries DIFF_NONCE, so the test knows the server on its port is ours.
"""

import json
import os

RECORD = os.environ["DIFF_RECORD"]
NONCE = os.environ["DIFF_NONCE"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def record(server, **seen):
    line = (json.dumps(dict(seen, server=server), sort_keys=True) + "\n").encode()
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def answer(server, path, received):
    return {"ok": True, "server": server, "nonce": NONCE, "path": path, "received": received}


class Recording:
    """ASGI middleware: records the scope every HTTP request and WebSocket arrives with."""

    def __init__(self, app, server):
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            record(
                self.server,
                type=scope["type"],
                http_version=scope.get("http_version", ""),
                method=scope.get("method", "GET"),
                path=scope["path"],
                raw_path=scope.get("raw_path", b"").decode("latin-1"),
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=[[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            )
        await self.app(scope, receive, send)
