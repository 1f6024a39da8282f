"""A relying party of authgate's OpenID Provider that signs people in the way RAG Modulo's backend does
(backend/auth/oidc.py and rag_solution/router/auth_router.py): Authlib's Starlette client, registered
with the provider's discovery document, `authorize_redirect` at /login and `authorize_access_token` at
/api/auth/callback. Authlib checks the ID token there: its signature against the provider's JWKS,
`iss`, `aud`, `exp`, `nonce` and `at_hash`. For tests/openid/relying_parties.rs.

argv[1]: JSON {"issuer": ..., "ca": <the gateway's certificate, PEM>, "clients": {"rag_modulo":
{"client_id", "client_secret"}, NAME: {"client_id", "client_secret"}, ...}}.
Prints its port on the first line of stdout, then serves on 127.0.0.1 (uvicorn).

The registrations:
- `rag_modulo`: RAG Modulo's own, word for word (client_secret_post, no PKCE; its `state` is
  `source=<web|cli>`). Login at GET /login?source=web, callback /api/auth/callback.
- every other NAME: the same with PKCE S256 and client_secret_basic, Authlib's random state. Login
  at GET /NAME/login, callback /api/auth/NAME/callback.

A callback answers 200 JSON: {"client", "state", "iss" (the response's `iss` parameter), "claims" (the
ID token's, as Authlib validated them), "userinfo" (Authlib's call of the userinfo endpoint with the
access token), "id_token", "access_token", "token_type", "expires_in", "scope"}; when Authlib refuses,
400 JSON {"client", "error", "description", "state"}. GET /logout?client=NAME ends the session at the provider
(RP-initiated logout with the ID token as hint) and comes back to GET /, which answers
{"logged_out": true, "state": ...} once Authlib has checked the state.

The gateway's test certificate is self-signed. Verification stays on: the certificate is given to
httpx as the trust store through SSL_CERT_FILE, as an operator would give RAG Modulo its CA."""
import json
import os
import secrets
import socket
import sys
import warnings

CONFIG = json.loads(sys.argv[1])
ISSUER = CONFIG["issuer"]
# httpx (trust_env, the default) builds its SSL context from SSL_CERT_FILE when it is set.
os.environ["SSL_CERT_FILE"] = CONFIG["ca"]

# Authlib 1.9 warns on import that its httpx integration will move to httpx2 (RAG Modulo's import
# warns the same): noise in the test output. Its module puts an "always" filter first on import, so
# this one goes in front of that.
import authlib.deprecate  # noqa: E402,F401

warnings.filterwarnings("ignore", message="The httpx module is deprecated")

import httpx  # noqa: E402  (after SSL_CERT_FILE is set)
import uvicorn  # noqa: E402
from authlib.integrations.starlette_client import OAuth, OAuthError  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.sessions import SessionMiddleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
SOCKET.bind(("127.0.0.1", 0))
SOCKET.listen(64)
PORT = SOCKET.getsockname()[1]
BASE = f"http://127.0.0.1:{PORT}"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
OTHERS = [name for name in CONFIG["clients"] if name != "rag_modulo"]
CALLBACKS = {"rag_modulo": f"{BASE}/api/auth/callback"}
CALLBACKS.update({name: f"{BASE}/api/auth/{name}/callback" for name in OTHERS})

oauth = OAuth()
# RAG Modulo's registration (backend/auth/oidc.py), unchanged but for the names of its settings. Its
# extra keywords (jwks_uri, validate_*, leeway) land in Authlib's server metadata, where the discovery
# document's own jwks_uri replaces the one given here.
oauth.register(
    name="rag_modulo",
    server_metadata_url=DISCOVERY,
    client_id=CONFIG["clients"]["rag_modulo"]["client_id"],
    client_secret=CONFIG["clients"]["rag_modulo"]["client_secret"],
    client_kwargs={"scope": "openid email profile", "token_endpoint_auth_method": "client_secret_post"},
    jwks_uri=DISCOVERY + "/jwks",
    validate_iss=True,
    validate_aud=True,
    validate_exp=True,
    validate_iat=False,
    validate_nbf=True,
    leeway=50000,
)
for name in OTHERS:
    oauth.register(
        name=name,
        server_metadata_url=DISCOVERY,
        client_id=CONFIG["clients"][name]["client_id"],
        client_secret=CONFIG["clients"][name]["client_secret"],
        client_kwargs={
            "scope": "openid email profile",
            "token_endpoint_auth_method": "client_secret_basic",
            "code_challenge_method": "S256",
        },
    )


async def login(request: Request):
    # auth_router.py `/login`: the state says where the login came from.
    source = request.query_params.get("source", "web")
    return await oauth.rag_modulo.authorize_redirect(request, CALLBACKS["rag_modulo"], state=f"source={source}")


async def other_login(request: Request):
    name = request.path_params["name"]
    if name not in OTHERS:
        return JSONResponse({"error": "no such registration"}, status_code=404)
    return await oauth.create_client(name).authorize_redirect(request, CALLBACKS[name])


async def callback(request: Request, name: str):
    client = oauth.create_client(name)
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as error:
        return JSONResponse(
            {
                "client": name,
                "error": error.error,
                "description": error.description,
                "state": request.query_params.get("state"),
            },
            status_code=400,
        )
    except httpx.HTTPError as error:
        return JSONResponse({"client": name, "error": "http_error", "description": repr(error)}, status_code=502)
    try:
        userinfo = await fetch_userinfo(client, name, token)
    except httpx.HTTPStatusError as error:
        userinfo = {"error": f"userinfo answered {error.response.status_code}", "body": error.response.text}
    # Kept for RP-initiated logout.
    request.session["id_token"] = token.get("id_token")
    request.session["client"] = name
    return JSONResponse(
        {
            "client": name,
            "state": request.query_params.get("state"),
            "iss": request.query_params.get("iss"),
            "claims": dict(token.get("userinfo") or {}),
            "userinfo": userinfo,
            "id_token": token.get("id_token"),
            "access_token": token.get("access_token"),
            "token_type": token.get("token_type"),
            "expires_in": token.get("expires_in"),
            "scope": token.get("scope"),
        }
    )


async def fetch_userinfo(client, name, token):
    """The userinfo endpoint with the access token: through Authlib for the PKCE registrations. RAG
    Modulo's own registration passes `leeway=50000`, which Authlib hands to its OAuth client too, where
    it makes every access token younger than 50000 s count as expired before a request; RAG Modulo
    never calls userinfo through Authlib (it reads the ID token's claims), so for that registration the
    endpoint is called plainly, as its web UI's OIDC client (`loadUserInfo`) would."""
    if name != "rag_modulo":
        return dict(await client.userinfo(token=token))
    metadata = await client.load_server_metadata()
    async with httpx.AsyncClient() as http:
        r = await http.get(metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"})
        r.raise_for_status()
        return r.json()


async def rag_modulo_callback(request: Request):
    return await callback(request, "rag_modulo")


async def other_callback(request: Request):
    name = request.path_params["name"]
    if name not in OTHERS:
        return JSONResponse({"error": "no such registration"}, status_code=404)
    return await callback(request, name)


async def logout(request: Request):
    name = request.query_params.get("client") or request.session.get("client") or "rag_modulo"
    client = oauth.create_client(name)
    return await client.logout_redirect(
        request,
        post_logout_redirect_uri=f"{BASE}/",
        id_token_hint=request.session.get("id_token"),
        client_id=client.client_id,
    )


async def home(request: Request):
    if "state" not in request.query_params:
        return JSONResponse({"rp": "authlib", "signed_in": bool(request.session.get("id_token"))})
    client = oauth.create_client(request.session.get("client") or "rag_modulo")
    try:
        await client.validate_logout_response(request)
    except OAuthError as error:
        return JSONResponse({"error": error.error, "description": error.description}, status_code=400)
    request.session.pop("id_token", None)
    return JSONResponse({"logged_out": True, "state": request.query_params["state"]})


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login),
        Route("/{name}/login", other_login),
        Route("/api/auth/callback", rag_modulo_callback),
        Route("/api/auth/{name}/callback", other_callback),
        Route("/logout", logout),
    ],
    # Authlib keeps state, nonce and PKCE verifier in the session between login and callback.
    middleware=[
        Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), session_cookie="rp_session", same_site="lax")
    ],
)

if __name__ == "__main__":
    print(PORT, flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[SOCKET])
