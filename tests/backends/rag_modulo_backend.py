"""A RAG Modulo-shaped backend for tests/proxy/rag_clients.rs: it authenticates and authorizes the way RAG
Modulo's code does, and answers what it saw.

- `core/authentication_middleware.py`: open paths pass; `Authorization: Bearer <t>` is required
  elsewhere; a token starting `dev-` or `mock_token_` is a mock admin; any other token is decoded
  by `auth/oidc.py` `verify_jwt_token` with PyJWT and `verify_signature: False`, and the user is
  built from `sub`, `email`, `name`, `uuid`, `role`.
- `core/authorization.py` with `core/config.py`'s default `RBAC_MAPPING`: no role is 401; the
  first pattern of the role that matches the path (`re.match`) and lists the method allows; else 403.

argv: the HS256 secret RAG Modulo is configured with (JWT_SECRET_KEY), only to report whether the
token it received was signed with it (RAG Modulo itself does not check). Prints its port, then serves.
Every answer is JSON: {"status", "detail", "user", "authorization", "signed_with_secret", "x_user_role"}."""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

SECRET = sys.argv[1]

OPEN_PATHS = {"/api/", "/api/auth/login", "/api/auth/callback", "/api/health", "/api/auth/oidc-config"}

# core/config.py, default_factory of rbac_mapping (as of the commit read for issue 19).
RBAC_MAPPING = {
    "admin": {
        r"^/api/user-collections/(.+)$": ["GET"],
        r"^/api/user-collections/(.+)/(.+)$": ["POST", "DELETE"],
        r"^/api/users/(.+)/.*$": ["GET", "POST", "PUT", "DELETE"],
        r"^/api/collections/(.+)$": ["GET", "POST", "PUT", "DELETE"],
    },
    "user": {
        r"^/api/user-collections/(.+)/(.+)$": ["POST", "DELETE"],
        r"^/api/user-collections/(.+)$": ["GET"],
        r"^/api/user-collections/collection/(.+)$": ["GET"],
        r"^/api/user-collections/collection/(.+)/users$": ["DELETE"],
        r"^/api/collections/(.+)$": ["GET"],
        r"^/api/users/(.+)/llm-providers.*$": ["GET", "POST", "PUT", "DELETE"],
        r"^/api/users/(.+)/llm-parameters.*$": ["GET", "POST", "PUT", "DELETE"],
        r"^/api/users/(.+)/prompt-templates.*$": ["GET", "POST", "PUT", "DELETE"],
        r"^/api/users/(.+)/pipelines.*$": ["GET", "POST", "PUT", "DELETE"],
        r"^/api/users/(.+)/collections.*$": ["GET", "POST", "PUT", "DELETE"],
    },
}


def is_mock_token(token):
    return token.startswith("dev-") or token.startswith("mock_token_")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, detail, user=None):
        authz = self.headers.get("Authorization")
        signed = None
        if authz and authz.startswith("Bearer ") and not is_mock_token(authz.split(" ")[1]):
            try:
                jwt.decode(authz.split(" ")[1], SECRET, algorithms=["HS256"])
                signed = True
            except jwt.InvalidTokenError:
                signed = False
        body = json.dumps(
            {
                "status": status,
                "detail": detail,
                "user": user,
                "authorization": self.headers.get_all("Authorization") or [],
                "signed_with_secret": signed,
                "x_user_role": self.headers.get("X-User-Role"),
                "x_user_uuid": self.headers.get("X-User-UUID"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path in OPEN_PATHS:
            return self.answer(200, "open path")
        auth_header = self.headers.get("Authorization")
        if not (auth_header and auth_header.startswith("Bearer ")):
            return self.answer(401, "Authentication required")
        token = auth_header.split(" ")[1]
        if is_mock_token(token):
            user = {"id": "mock", "role": self.headers.get("X-User-Role", "admin"), "mock": True}
        else:
            try:
                payload = jwt.decode(
                    token, options={"verify_signature": False, "verify_exp": False, "verify_iat": False}
                )
            except jwt.InvalidTokenError:
                return self.answer(401, "Invalid authentication credentials")
            user = {k: payload.get(k) for k in ("sub", "email", "name", "uuid", "role")}
        role = user.get("role")
        if not role:
            return self.answer(401, "No role specified", user)
        for pattern, methods in RBAC_MAPPING.get(role, {}).items():
            if re.match(pattern, path) and self.command in methods:
                return self.answer(200, "authorized", user)
        return self.answer(403, "User is not authorized to access this resource (requires appropriate role)", user)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
