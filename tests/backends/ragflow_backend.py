"""A RAGFlow-shaped backend for tests/proxy/ragflow_profile.rs: it authenticates the way RAGFlow's
`_load_user` (api/apps/__init__.py) does for the HTTP API, by looking the raw bearer up in its
api_token table, and answers RAGFlow-shaped JSON for what ragflow-sdk calls.

argv: TENANT=KEY pairs, the API tokens it knows. Prints its port, then serves (stdlib only).

- `Authorization: Bearer <key>` with a known key: `GET /api/v1/datasets` answers
  {"code": 0, "data": [{"id", "name": "kb-of-<tenant>", ...}]}; `POST /api/v1/chats` answers
  {"code": 0, "data": {"id", "name", ...}} echoing the body's name and dataset_ids.
- Anything else on /api/v1: HTTP 200 with {"code": 109, "message": "Authentication error: API key
  is invalid!", "data": false}, as RAGFlow answers.
- `GET /__seen` (the test's, no auth): every request so far, as [{method, path, headers}]."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = {}
for pair in sys.argv[1:]:
    tenant, key = pair.split("=", 1)
    TOKENS[key] = tenant

SEEN = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path == "/__seen":
            with LOCK:
                return self.answer(list(SEEN))
        with LOCK:
            SEEN.append({"method": method, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()]})
        auth = self.headers.get_all("Authorization") or []
        tenant = None
        if len(auth) == 1 and auth[0].startswith("Bearer "):
            tenant = TOKENS.get(auth[0][len("Bearer "):])
        if tenant is None:
            return self.answer({"code": 109, "message": "Authentication error: API key is invalid!", "data": False})
        if method == "GET" and path == "/api/v1/datasets":
            return self.answer({"code": 0, "data": [{"id": "ds-" + tenant, "name": "kb-of-" + tenant, "tenant_id": tenant,
                                                     "chunk_count": 0, "document_count": 0, "chunk_method": "naive"}]})
        if method == "POST" and path == "/api/v1/chats":
            body = json.loads(raw or b"{}")
            return self.answer({"code": 0, "data": {"id": "chat-" + tenant, "name": body.get("name"),
                                                    "dataset_ids": body.get("dataset_ids", []),
                                                    "llm": body.get("llm", {}), "prompt": body.get("prompt", {}),
                                                    "tenant_id": tenant}})
        return self.answer({"code": 102, "message": "not in this test backend", "data": False})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
