"""A second relying party of authgate's OpenID Provider, written RAGFlow's way (api/apps/auth/oidc.py
and oauth.py): `requests` for discovery, the authorization request and the code exchange, PyJWT's
PyJWKClient and `jwt.decode` for the ID token, with the algorithms pinned from the discovery document
(never read from the token's header), `aud` = the client id and `iss` = the discovered issuer, then
userinfo with the access token. For tests/openid/relying_parties.rs.

argv[1]: JSON {"mode", "issuer", "ca" (the gateway's certificate, PEM), "client_id", "client_secret",
"redirect_uri", "session" (the value of a signed-in browser's `__Host-authgate` cookie)}. The mode:
- "ragflow": RAGFlow's exchange exactly: no PKCE, no nonce, client_id and client_secret in the form
  (client_secret_post);
- "pkce": PKCE S256 and a nonce (checked when it comes back), client_secret_basic.

It plays the browser for one step: the authorization request is a GET with that session cookie, as a
navigation from the relying party's site would be, and the redirect back is read from `Location`
instead of followed. Prints one JSON object: {"ok": true, "state_sent", "state", "iss", "header",
"claims" (verified), "userinfo", "token_type", "expires_in", "scope", "id_token", "access_token",
"token_cache_control"}, or
{"ok": false, "step", "detail"} and exits 1."""
import base64
import hashlib
import json
import secrets
import ssl
import sys
import urllib.parse

import jwt
import requests

# RAGFlow's allow-list (api/apps/auth/oidc.py `_ALLOWED_OIDC_SIGNING_ALGS`).
ALLOWED_ALGS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

CONFIG = json.loads(sys.argv[1])
CA = CONFIG["ca"]


def fail(step, detail):
    print(json.dumps({"ok": False, "step": step, "detail": detail}))
    sys.exit(1)


def main():
    issuer = CONFIG["issuer"]
    # RAGFlow's `_load_oidc_metadata`.
    r = requests.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=7, verify=CA)
    if r.status_code != 200:
        fail("discovery", f"{r.status_code} {r.text}")
    metadata = r.json()
    advertised = metadata.get("id_token_signing_alg_values_supported") or []
    algorithms = [a for a in advertised if a in ALLOWED_ALGS] or ["RS256"]

    strict = CONFIG["mode"] == "pkce"
    state = secrets.token_urlsafe(24)
    nonce = secrets.token_urlsafe(24) if strict else None
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    # RAGFlow's `get_authorization_url`; in "pkce" mode, with a nonce and PKCE.
    params = {
        "client_id": CONFIG["client_id"],
        "redirect_uri": CONFIG["redirect_uri"],
        "response_type": "code",
        "scope": "openid email profile",
        "state": state,
    }
    if strict:
        params.update({"nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"})
    url = f"{metadata['authorization_endpoint']}?{urllib.parse.urlencode(params)}"
    r = requests.get(
        url,
        allow_redirects=False,
        timeout=7,
        verify=CA,
        headers={
            "Cookie": f"__Host-authgate={CONFIG['session']}",
            "Accept": "text/html",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document",
        },
    )
    location = r.headers.get("Location", "")
    if r.status_code not in (302, 303) or not location.startswith(CONFIG["redirect_uri"] + "?"):
        fail("authorize", f"{r.status_code} Location={location!r} {r.text[:500]}")
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    if "code" not in back:
        fail("authorize", f"no code in {location!r}")
    if back.get("state") != state:
        fail("state", f"sent {state!r}, got {back.get('state')!r}")

    if strict:
        # client_secret_basic (RFC 6749 2.3.1: id and secret form-encoded first), with the verifier.
        data = {
            "grant_type": "authorization_code",
            "code": back["code"],
            "redirect_uri": CONFIG["redirect_uri"],
            "code_verifier": verifier,
        }
        auth = (
            urllib.parse.quote(CONFIG["client_id"], safe=""),
            urllib.parse.quote(CONFIG["client_secret"], safe=""),
        )
    else:
        # RAGFlow's `exchange_code_for_token`, word for word.
        data = {
            "client_id": CONFIG["client_id"],
            "client_secret": CONFIG["client_secret"],
            "code": back["code"],
            "redirect_uri": CONFIG["redirect_uri"],
            "grant_type": "authorization_code",
        }
        auth = None
    r = requests.post(
        metadata["token_endpoint"],
        data=data,
        auth=auth,
        headers={"Accept": "application/json"},
        timeout=7,
        verify=CA,
    )
    if r.status_code != 200:
        fail("token", f"{r.status_code} {r.text}")
    token = r.json()
    token_cache_control = r.headers.get("Cache-Control")

    # RAGFlow's `parse_id_token`.
    try:
        jwks = jwt.PyJWKClient(metadata["jwks_uri"], ssl_context=ssl.create_default_context(cafile=CA))
        key = jwks.get_signing_key_from_jwt(token["id_token"]).key
        claims = jwt.decode(
            token["id_token"],
            key=key,
            algorithms=algorithms,
            audience=str(CONFIG["client_id"]),
            issuer=metadata["issuer"],
        )
    except Exception as error:  # noqa: BLE001  (any failure is the answer)
        fail("id_token", repr(error))
    if strict and claims.get("nonce") != nonce:
        fail("nonce", f"sent {nonce!r}, got {claims.get('nonce')!r}")

    # RAGFlow's `fetch_user_info`.
    r = requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=7,
        verify=CA,
    )
    if r.status_code != 200:
        fail("userinfo", f"{r.status_code} {r.text}")

    print(
        json.dumps(
            {
                "ok": True,
                "state_sent": state,
                "state": back.get("state"),
                "iss": back.get("iss"),
                "header": jwt.get_unverified_header(token["id_token"]),
                "claims": claims,
                "userinfo": r.json(),
                "token_type": token.get("token_type"),
                "expires_in": token.get("expires_in"),
                "scope": token.get("scope"),
                "id_token": token["id_token"],
                "access_token": token["access_token"],
                "token_cache_control": token_cache_control,
            }
        )
    )


if __name__ == "__main__":
    main()
