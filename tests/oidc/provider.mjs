// One OpenID Provider per process for the authgate tests: panva's oidc-provider on 127.0.0.1, with
// its own login page (no devInteractions), consent granted automatically, keys made at start and
// held in memory only. Nothing is written to disk; SIGTERM stops it.
//
// Started by tests/common/oidc.rs as `node tests/oidc/provider.mjs '<json>'` (or with the JSON in
// OIDC_PROVIDER_CONFIG). The JSON:
//   port        0 picks a free port. The first stdout line is `LISTENING <port>`.
//   clients     [{client_id, client_secret, redirect_uris, token_endpoint_auth_method?,
//                 backchannel_logout_uri?, backchannel_logout_session_required?,
//                 post_logout_redirect_uris?, id_token_signed_response_alg?}]
//   accounts    [{sub, username, password, email?, email_verified?, name?, groups?}]
//   jwt_access_tokens  true (default): access tokens are RS256 JWTs whose aud is the client id
//                      (resource indicator urn:authgate:client:<client_id>, set by default).
//                      false: opaque access tokens, usable at the userinfo endpoint.
//   ttl         {id_token?, access_token?, code?} in seconds.
//   backchannel_ca  PEM file of the CA the gateway's certificate chains to, read at each
//                   back-channel logout (the file may appear after this process starts).
//
// Routes of its own beside the protocol's:
//   GET  /interaction/<uid>          the login form (inputs `login`, `password`, button #provider-sign-in);
//                                    the consent prompt is granted here without a page
//   POST /interaction/<uid>/login    checks the form, finishes the login prompt
//   POST /interaction/<uid>/abort    ends the request with access_denied (button #provider-cancel)
//   POST /test/backchannel-logout?sub=<sub>[&client_id=<id>][&keep_session=1]
//        sends a back-channel logout token to every client with a backchannel_logout_uri that the
//        user has a provider session with, then ends those sessions; answers
//        {"sent":[{"client_id","sid","ok","error"?}]}
//   POST /test/next-id-token  JSON {"claims":{...}, "sign":"keep"|"none"|"hs256-public-key"|"unknown-key"}
//        rewrites the id_token of the next successful token response: claims merged over the real
//        ones (null deletes one), then signed as asked. For negative tests at the callback.
//   POST /test/sign  JSON {"claims":{...}, "sign":"RS256"|"ES256"|"none"|"hs256-public-key"|"unknown-key"}
//        a JWT signed with this provider's keys: iss, iat and exp (5 minutes) filled in unless given.
//        Answers {"token": "..."}. For bearer tests.
import * as crypto from 'node:crypto';
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

// The gateway's back-channel endpoint is https://localhost:<port>: resolve localhost to 127.0.0.1,
// where test gateways listen, rather than ::1.
dns.setDefaultResultOrder('ipv4first');

const config = JSON.parse(process.argv[2] ?? process.env.OIDC_PROVIDER_CONFIG ?? '{}');
const accounts = config.accounts ?? [];
const jwtAccessTokens = config.jwt_access_tokens ?? true;
const RESOURCE_PREFIX = 'urn:authgate:client:';

// ---------------------------------------------------------------------------------------------
// Keys: one RS256 and one ES256 signing key, made now, never written anywhere.

function signingKey(alg) {
  const { privateKey, publicKey } = alg === 'RS256'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    alg, privateKey, publicKey, kid: crypto.randomBytes(8).toString('hex'),
    jwk: { ...jwk, alg, use: 'sig' },
  };
}
const keys = { RS256: signingKey('RS256'), ES256: signingKey('ES256') };
for (const key of Object.values(keys)) key.jwk.kid = key.kid;

const b64u = (data) => Buffer.from(data).toString('base64url');

// A compact JWS of `payload`, signed as `sign` says (the provider's keys, or one of the broken
// signatures a relying party must refuse).
function jws(payload, sign, kid) {
  const byKid = Object.values(keys).find((k) => k.kid === kid);
  let alg = sign;
  if (sign === 'keep') alg = byKid?.alg ?? 'RS256';
  const header = { typ: 'JWT' };
  let signer;
  switch (alg) {
    case 'RS256':
    case 'ES256': {
      const key = sign === 'keep' && byKid ? byKid : keys[alg];
      Object.assign(header, { alg, kid: key.kid });
      signer = (input) => crypto.sign('sha256', input, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
      break;
    }
    case 'none':
      Object.assign(header, { alg: 'none' });
      signer = () => Buffer.alloc(0);
      break;
    case 'hs256-public-key': {
      // The algorithm-confusion attack: HMAC keyed with the bytes of the published RSA key.
      const secret = keys.RS256.publicKey.export({ type: 'spki', format: 'pem' });
      Object.assign(header, { alg: 'HS256', kid: keys.RS256.kid });
      signer = (input) => crypto.createHmac('sha256', secret).update(input).digest();
      break;
    }
    case 'unknown-key': {
      // A well-formed RS256 signature by a key the JWKS does not hold, under the real kid.
      const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      Object.assign(header, { alg: 'RS256', kid: keys.RS256.kid });
      signer = (input) => crypto.sign('sha256', input, privateKey);
      break;
    }
    default:
      throw new Error(`unknown signing choice ${sign}`);
  }
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${b64u(signer(input))}`;
}

function mergeClaims(payload, overrides) {
  const out = { ...payload };
  for (const [name, value] of Object.entries(overrides ?? {})) {
    if (value === null) delete out[name];
    else out[name] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Storage: a plain in-memory adapter, so the test routes can find a user's sessions.

const stores = new Map();
const epoch = () => Math.floor(Date.now() / 1000);

class MemoryAdapter {
  constructor(model) {
    this.model = model;
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expiresAt: expiresIn ? epoch() + expiresIn : Infinity });
  }

  async find(id) {
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt < epoch()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [id, entry] of this.store) {
      if (entry.payload[field] === value) return this.find(id);
    }
    return undefined;
  }

  async findByUid(uid) { return this.findBy('uid', uid); }

  async findByUserCode(userCode) { return this.findBy('userCode', userCode); }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = epoch();
  }

  async destroy(id) { this.store.delete(id); }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.store) {
      if (entry.payload.grantId === grantId) this.store.delete(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Outgoing requests (back-channel logout): to a test gateway on 127.0.0.1 over its test CA.
// oidc-provider's own fetch refuses loopback addresses (SSRF protection), rightly for production.

function testFetch(url, options) {
  const target = new URL(url);
  const transport = target.protocol === 'https:' ? https : http;
  const ca = config.backchannel_ca ? fs.readFileSync(config.backchannel_ca) : undefined;
  const headers = Object.fromEntries(new Headers(options.headers));
  const body = options.body === undefined ? undefined : String(options.body);
  if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = transport.request(target, {
      method: options.method ?? 'GET', headers, ca, signal: options.signal,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve(new Response(res.statusCode === 204 ? null : Buffer.concat(chunks), {
        status: res.statusCode,
        headers: Object.entries(res.headers).filter(([, v]) => typeof v === 'string'),
      })));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// Pages.

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title></head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage(uid, clientId, error, login = '') {
  return page('Sign in to the test provider', `<p>Signing in to <span id="provider-client">${esc(clientId)}</span>.</p>
${error ? `<p id="provider-error" role="alert">${esc(error)}</p>` : ''}
<form id="provider-login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Username <input id="provider-login-name" name="login" value="${esc(login)}" autofocus required></label>
  <label>Password <input id="provider-password" name="password" type="password" required></label>
  <button id="provider-sign-in" type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
  <button id="provider-cancel" type="submit">Cancel</button>
</form>`);
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}
const sendJson = (res, status, value) => send(res, status, 'application/json', JSON.stringify(value));

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// The provider.

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const ttl = config.ttl ?? {};
const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients: (config.clients ?? []).map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    ...c,
    ...(c.backchannel_logout_uri
      ? { backchannel_logout_session_required: c.backchannel_logout_session_required ?? true }
      : {}),
  })),
  async findAccount(_ctx, sub) {
    const account = accounts.find((a) => a.sub === sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: account.username,
          name: account.name,
          email: account.email,
          email_verified: account.email_verified,
          groups: account.groups,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // The scopes' claims go in the id_token itself, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  jwks: { keys: [keys.RS256.jwk, keys.ES256.jwk] },
  pkce: { required: () => true },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    ...(ttl.id_token ? { IdToken: ttl.id_token } : {}),
    ...(ttl.access_token ? { AccessToken: ttl.access_token } : {}),
    ...(ttl.code ? { AuthorizationCode: ttl.code } : {}),
  },
  fetch: testFetch,
  async extraTokenClaims(_ctx, token) {
    // Access tokens name the user the way id_tokens do, for bearer mapping.
    const account = accounts.find((a) => a.sub === token.accountId);
    if (!account) return undefined;
    return {
      preferred_username: account.username,
      email: account.email,
      email_verified: account.email_verified,
      groups: account.groups,
    };
  },
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
    backchannelLogout: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out of the test provider', `${form}
<button id="provider-sign-out" type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<button id="provider-stay" type="submit" form="op.logoutForm">Stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out of the test provider', '<p id="provider-signed-out">Signed out.</p>');
      },
    },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, client, oneOf) {
        if (oneOf) return oneOf;
        return jwtAccessTokens ? `${RESOURCE_PREFIX}${client.clientId}` : undefined;
      },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(_ctx, indicator, client) {
        if (indicator !== `${RESOURCE_PREFIX}${client.clientId}`) throw new errors.InvalidTarget();
        return {
          scope: 'openid email profile groups',
          audience: client.clientId,
          accessTokenFormat: 'jwt',
          ...(ttl.access_token ? { accessTokenTTL: ttl.access_token } : {}),
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Provider error', Object.entries(out)
      .map(([k, v]) => `<p class="provider-error-${esc(k)}"><b>${esc(k)}</b>: ${esc(v)}</p>`).join('\n'));
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('backchannel.error', (_ctx, err, client) => console.error(`backchannel logout to ${client.clientId} failed: ${err.message}`));

// ---------------------------------------------------------------------------------------------
// Interactions: the login form, and consent granted for whatever was asked.

async function interaction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, 'text/html; charset=utf-8', page('Sign-in expired', `<p id="provider-error">${esc(err.message)}</p>`));
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, 'text/html; charset=utf-8', page('Sign-in expired', '<p id="provider-error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;

  if (action === 'abort' && req.method === 'POST') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name === 'login') {
    if (action === 'login' && req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      const login = form.get('login') ?? '';
      const password = form.get('password') ?? '';
      const account = accounts.find((a) => a.username === login || (a.email && a.email === login));
      const given = Buffer.from(password);
      const expected = Buffer.from(account?.password ?? '');
      if (!account || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
        send(res, 200, 'text/html; charset=utf-8', loginPage(uid, params.client_id, 'Wrong username or password.', login));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
      return;
    }
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid, params.client_id));
    return;
  }

  if (prompt.name === 'consent') {
    const { details: missing } = prompt;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      consent: details.grantId ? {} : { grantId },
    }, { mergeWithLastSubmission: true });
    return;
  }

  send(res, 400, 'text/html; charset=utf-8', page('Unsupported prompt', `<p id="provider-error">${esc(prompt.name)}</p>`));
}

// ---------------------------------------------------------------------------------------------
// Test routes.

async function backchannelLogout(url) {
  const sub = url.searchParams.get('sub');
  const only = url.searchParams.get('client_id');
  const keep = url.searchParams.get('keep_session') === '1';
  const sent = [];
  const sessions = stores.get('Session') ?? new Map();
  for (const [id, { payload }] of [...sessions]) {
    if (payload.accountId !== sub) continue;
    for (const [clientId, authorization] of Object.entries(payload.authorizations ?? {})) {
      if (only && clientId !== only) continue;
      const client = await provider.Client.find(clientId);
      if (!client?.backchannelLogoutUri) continue;
      try {
        await client.backchannelLogout(sub, authorization.sid);
        sent.push({ client_id: clientId, sid: authorization.sid, ok: true });
      } catch (err) {
        sent.push({ client_id: clientId, sid: authorization.sid, ok: false, error: err.message });
      }
    }
    if (!keep) sessions.delete(id);
  }
  return { sent };
}

let nextIdToken;

// Rewrite the id_token in a token response the provider is about to send (see /test/next-id-token).
function tamperTokenResponse(res) {
  const rewrite = nextIdToken;
  nextIdToken = undefined;
  const { end } = res;
  const chunks = [];
  const { write } = res;
  res.write = (chunk) => { chunks.push(Buffer.from(chunk)); return true; };
  res.end = (chunk, ...rest) => {
    if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
    let body = Buffer.concat(chunks);
    if (res.statusCode === 200) {
      const json = JSON.parse(body.toString('utf8'));
      if (json.id_token) {
        const [h, p] = json.id_token.split('.');
        const header = JSON.parse(Buffer.from(h, 'base64url'));
        const payload = mergeClaims(JSON.parse(Buffer.from(p, 'base64url')), rewrite.claims);
        json.id_token = jws(payload, rewrite.sign ?? 'keep', header.kid);
        body = Buffer.from(JSON.stringify(json));
      }
    } else {
      nextIdToken = rewrite; // not spent on a failed exchange
    }
    res.write = write;
    res.end = end;
    if (!res.headersSent) res.setHeader('content-length', body.length);
    return end.call(res, body, ...rest.filter((r) => typeof r === 'function'));
  };
}

async function testRoute(req, res, url) {
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'POST only' });
    return;
  }
  switch (url.pathname) {
    case '/test/backchannel-logout':
      sendJson(res, 200, await backchannelLogout(url));
      return;
    case '/test/next-id-token':
      nextIdToken = JSON.parse(await readBody(req) || '{}');
      sendJson(res, 200, { ok: true });
      return;
    case '/test/sign': {
      const { claims, sign = 'RS256' } = JSON.parse(await readBody(req) || '{}');
      const now = epoch();
      const payload = mergeClaims({ iss: issuer, iat: now, exp: now + 300 }, claims);
      sendJson(res, 200, { token: jws(payload, sign, undefined) });
      return;
    }
    default:
      sendJson(res, 404, { error: 'no such test route' });
  }
}

const handle = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    const m = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/.exec(url.pathname);
    if (m) {
      await interaction(req, res, m[1], m[2]);
      return;
    }
    if (url.pathname.startsWith('/test/')) {
      await testRoute(req, res, url);
      return;
    }
  } catch (err) {
    console.error(err);
    if (!res.headersSent) sendJson(res, 500, { error: err.message });
    else res.destroy();
    return;
  }
  if (nextIdToken && req.method === 'POST' && url.pathname === '/token') tamperTokenResponse(res);
  handle(req, res);
});

process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
process.on('SIGINT', () => process.exit(0));

console.log(`LISTENING ${port}`);
