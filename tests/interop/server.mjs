// Interop test server for freshtoken: runs the third-party `oidc-provider`
// OAuth 2.0 / OpenID Connect authorization server on 127.0.0.1, with one
// client per token endpoint client-authentication method.
//
// Usage: node server.mjs OUTDIR
//
// Writes fresh keys (PEM, mode 0600) and client secrets (no trailing newline)
// to OUTDIR, then prints exactly one JSON line on stdout once listening:
//
//   {"issuer":"http://127.0.0.1:PORT","token_endpoint":"...",...}
//
// Nothing else is ever written to stdout; diagnostics go to stderr.
// The process exits on SIGTERM, SIGINT and when stdin reaches EOF, so a
// parent test should spawn it with a piped stdin and keep that pipe open for
// as long as the server is needed (dropping the pipe stops the server).
//
// Set FRESHTOKEN_INTEROP_VERBOSE=1 to see oidc-provider's own notices and
// warnings (on stderr).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { format } from 'node:util';

// ---------------------------------------------------------------------------
// Output discipline: stdout carries only the final JSON line. oidc-provider
// prints its "NOTICE"s with console.info (i.e. to stdout) and its "WARNING"s
// with console.warn, some of them at import time, so the console is
// redirected *before* oidc-provider is imported (dynamically, below).
// ---------------------------------------------------------------------------
const verbose = process.env.FRESHTOKEN_INTEROP_VERBOSE === '1';
const toStderr = (...args) => {
  const line = format(...args);
  if (!verbose && /^(\x1b\[[0-9;]*m)?oidc-provider (NOTICE|WARNING): /.test(line)) {
    return;
  }
  process.stderr.write(`${line}\n`);
};
for (const m of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[m] = toStderr;
}
process.stdout.on('error', () => {});

function die(msg) {
  process.stderr.write(`interop server: ${msg}\n`);
  process.exit(1);
}

if (process.argv.length !== 3) {
  die('usage: node server.mjs OUTDIR');
}
const outDir = path.resolve(process.argv[2]);
try {
  if (!fs.statSync(outDir).isDirectory()) die(`${outDir} is not a directory`);
} catch (err) {
  die(`cannot use OUTDIR ${outDir}: ${err.message}`);
}

const { default: Provider, errors } = await import('oidc-provider');
// oidc-provider's own JOSE library, to check token-exchange subject tokens.
const { createRemoteJWKSet, jwtVerify } = await import('jose');

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------
function writeSecretFile(name, contents) {
  const file = path.join(outDir, name);
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.fchmodSync(fd, 0o600); // in case the file already existed
    fs.writeSync(fd, contents);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

// RFC 7638 JWK thumbprint, used as kid.
function thumbprint(jwk) {
  const members = {
    RSA: ['e', 'kty', 'n'],
    EC: ['crv', 'kty', 'x', 'y'],
    OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = `{${members.map((k) => `${JSON.stringify(k)}:${JSON.stringify(jwk[k])}`).join(',')}}`;
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------
const keySpecs = {
  'pk-rs256': { alg: 'RS256', file: 'rs256', type: 'rsa', opts: { modulusLength: 2048 }, extra: { pkcs1: 'rs256.pkcs1.pem' } },
  'pk-ps256': { alg: 'PS256', file: 'ps256', type: 'rsa', opts: { modulusLength: 2048 } },
  'pk-es256': { alg: 'ES256', file: 'es256', type: 'ec', opts: { namedCurve: 'P-256' }, extra: { sec1: 'es256.sec1.pem' } },
  'pk-es384': { alg: 'ES384', file: 'es384', type: 'ec', opts: { namedCurve: 'P-384' } },
  'pk-eddsa': { alg: 'EdDSA', file: 'eddsa', type: 'ed25519', opts: {} },
};

const pkClients = {};
for (const [clientId, spec] of Object.entries(keySpecs)) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(spec.type, spec.opts);
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = thumbprint(jwk);
  const info = {
    method: 'private_key_jwt',
    alg: spec.alg,
    kid,
    key_file: writeSecretFile(`${spec.file}.pem`, privateKey.export({ type: 'pkcs8', format: 'pem' })),
  };
  if (spec.extra?.pkcs1) {
    info.pkcs1_key_file = writeSecretFile(spec.extra.pkcs1, privateKey.export({ type: 'pkcs1', format: 'pem' }));
  }
  if (spec.extra?.sec1) {
    info.sec1_key_file = writeSecretFile(spec.extra.sec1, privateKey.export({ type: 'sec1', format: 'pem' }));
  }
  pkClients[clientId] = {
    info,
    jwks: { keys: [{ ...jwk, kid, use: 'sig', alg: spec.alg }] },
  };
}

// A key that is registered nowhere, for negative tests.
const wrongKeyFile = writeSecretFile(
  'wrong.pem',
  crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    .export({ type: 'pkcs8', format: 'pem' }),
);

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------
// 43 random base64url chars plus characters that must be form-urlencoded
// (RFC 6749 §2.3.1) before the Basic header is built: '+' would otherwise
// decode to a space, '%' would start an escape, ':' would split id/secret.
const specialSecret = () => `${crypto.randomBytes(32).toString('base64url')}+/:%&=`;
const secrets = {
  basic: specialSecret(),
  dpop: specialSecret(),
  post: specialSecret(),
  introspector: specialSecret(),
  login: specialSecret(),
  // 86 chars (512 bits), enough for HS256..HS512.
  'secret-jwt': crypto.randomBytes(64).toString('base64url'),
};
const secretFiles = Object.fromEntries(
  Object.entries(secrets).map(([id, s]) => [id, writeSecretFile(`${id}.secret`, s)]),
);

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------
const SCOPE = 'api:read api:write';
const RESOURCE = 'https://api.example.test/';

const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: SCOPE,
};

// A person's login (`freshtoken login`): the code flow with PKCE on a loopback redirect
// whose port is picked here (oidc-provider matches redirect URIs exactly), refresh tokens
// rotated on every use (a reused one revokes the grant).
// The probe only finds a free port: a connection that reaches it meanwhile (another test's
// client trying a port it once picked) is dropped at once, else close() would wait for it
// and the harness would never say it is up.
const loginPort = await new Promise((resolve, reject) => {
  const probe = http.createServer();
  probe.on('connection', (socket) => socket.destroy());
  probe.once('error', reject);
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
    probe.closeAllConnections();
  });
});
const loginRedirectUri = `http://127.0.0.1:${loginPort}/callback`;

const clients = [
  { ...common, client_id: 'basic', client_secret: secrets.basic, token_endpoint_auth_method: 'client_secret_basic' },
  { ...common, client_id: 'post', client_secret: secrets.post, token_endpoint_auth_method: 'client_secret_post' },
  {
    ...common,
    client_id: 'secret-jwt',
    client_secret: secrets['secret-jwt'],
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
  },
  ...Object.entries(pkClients).map(([clientId, { info, jwks }]) => ({
    ...common,
    client_id: clientId,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: info.alg,
    jwks,
  })),
  { ...common, client_id: 'introspector', client_secret: secrets.introspector, token_endpoint_auth_method: 'client_secret_basic' },
  // DPoP (RFC 9449): this client's tokens must be DPoP-bound; a bearer request is refused.
  {
    ...common,
    client_id: 'dpop',
    client_secret: secrets.dpop,
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  },
  {
    client_id: 'login',
    client_secret: secrets.login,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: [loginRedirectUri],
    scope: 'openid offline_access api:read',
  },
];

// DPoP nonces (RFC 9449 §8) at the token endpoint when FRESHTOKEN_INTEROP_DPOP_NONCE=1: a
// proof without the provider's current nonce gets `use_dpop_nonce` and a `DPoP-Nonce`.
const dpopNonce = process.env.FRESHTOKEN_INTEROP_DPOP_NONCE === '1';

// Token exchange (RFC 8693), when FRESHTOKEN_INTEROP_CI_ISSUER names a CI identity issuer
// (the dev-server's /ci): a public client trades that issuer's identity tokens, checked
// against its JWKS, for access tokens.
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ciIssuer = process.env.FRESHTOKEN_INTEROP_CI_ISSUER;
const ciAudience = process.env.FRESHTOKEN_INTEROP_CI_AUDIENCE || 'freshtoken-interop';
if (ciIssuer) {
  clients.push({ ...common, client_id: 'exchanger', grant_types: [EXCHANGE], token_endpoint_auth_method: 'none' });
}

// Mutual TLS (RFC 8705), when FRESHTOKEN_INTEROP_MTLS_DIR holds certificates the test made
// (server.pem and server.key for 127.0.0.1, client-ca.pem, self-signed.pem): a second,
// https listener asks for client certificates, and two clients authenticate by theirs —
// `mtls-pki` (tls_client_auth: issued by client-ca.pem for FRESHTOKEN_INTEROP_MTLS_SAN) and
// `mtls-self` (self_signed_tls_client_auth: exactly self-signed.pem) — with tokens bound
// to the certificate. Discovery names that listener in mtls_endpoint_aliases.
const mtlsDir = process.env.FRESHTOKEN_INTEROP_MTLS_DIR;
const mtlsSan = process.env.FRESHTOKEN_INTEROP_MTLS_SAN || 'mtls-pki.freshtoken.test';
let mtls;
if (mtlsDir) {
  const read = (name) => fs.readFileSync(path.join(mtlsDir, name));
  mtls = {
    serverCert: read('server.pem'),
    serverKey: read('server.key'),
    clientCa: read('client-ca.pem'),
    selfSigned: new crypto.X509Certificate(read('self-signed.pem')),
  };
  const bound = { ...common, tls_client_certificate_bound_access_tokens: true };
  clients.push({ ...bound, client_id: 'mtls-pki', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_dns: mtlsSan });
  clients.push({
    ...bound,
    client_id: 'mtls-self',
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: [{ ...mtls.selfSigned.publicKey.export({ format: 'jwk' }), x5c: [mtls.selfSigned.raw.toString('base64')] }] },
  });
}

const config = {
  clients,
  // Non-OIDC scopes must be listed here: without a `resource`, oidc-provider
  // drops every requested scope that is not in this list from
  // client_credentials tokens.
  scopes: ['openid', 'offline_access', 'api:read', 'api:write'],
  // `none` only for the token exchange's public client: the discovery tests expect it absent.
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', ...(ciIssuer ? ['none'] : [])],
  enabledJWA: {
    // DPoP proofs signed with RSA keys too (the default takes ES256 and EdDSA only).
    dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'RS256', 'PS256'],
    // The default list lacks ES384 (and the 384/512 variants generally).
    clientAuthSigningAlgValues: [
      'HS256', 'HS384', 'HS512',
      'RS256', 'RS384', 'RS512',
      'PS256', 'PS384', 'PS512',
      'ES256', 'ES384', 'ES512',
      'Ed25519', 'EdDSA',
    ],
  },
  clockTolerance: 15,
  // The login client: a refresh token with every code, rotated on every refresh.
  issueRefreshToken: async (ctx, client) => client.clientId === 'login',
  rotateRefreshToken: true,
  pkce: { required: () => true },
  cookies: { keys: ['freshtoken-interop-cookie-key-not-a-secret'] },
  clientBasedCORS: () => false,
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 600,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    // On by default in v9; named here for the nonce switch (see dpopNonce above).
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => dpopNonce },
    // Enabled by default in v9. No default resource, so a plain
    // client_credentials request (scope only) gets an opaque token;
    // `resource=https://api.example.test/` is also accepted (opaque, aud set),
    // anything else gives invalid_target.
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator === RESOURCE) {
          return { scope: SCOPE, accessTokenFormat: 'opaque', accessTokenTTL: 300 };
        }
        throw new errors.InvalidTarget();
      },
    },
  },
};

const server = http.createServer();
server.on('clientError', (err, socket) => socket.destroy());
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// The mTLS listener: the TLS layer asks for a certificate and checks it against the client CA
// without refusing any (self-signed ones included); oidc-provider decides what counts.
let mtlsServer;
if (mtls) {
  mtlsServer = https.createServer({
    cert: mtls.serverCert,
    key: mtls.serverKey,
    ca: [mtls.clientCa],
    requestCert: true,
    rejectUnauthorized: false,
  });
  mtlsServer.on('clientError', (err, socket) => socket.destroy());
  await new Promise((resolve, reject) => {
    mtlsServer.once('error', reject);
    mtlsServer.listen(0, '127.0.0.1', resolve);
  });
  mtls.base = `https://127.0.0.1:${mtlsServer.address().port}`;
  const peer = (ctx) => {
    const socket = ctx.req.socket;
    const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    return cert?.raw ? new crypto.X509Certificate(cert.raw) : undefined;
  };
  config.clientAuthMethods.push('tls_client_auth', 'self_signed_tls_client_auth');
  config.features.mTLS = {
    enabled: true,
    certificateBoundAccessTokens: true,
    tlsClientAuth: true,
    selfSignedTlsClientAuth: true,
    getCertificate: (ctx) => peer(ctx)?.toString(),
    certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
    certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_san_dns'
      && (peer(ctx)?.subjectAltName || '').split(', ').includes(`DNS:${expected}`),
  };
  config.discovery = { mtls_endpoint_aliases: { token_endpoint: `${mtls.base}/token` } };
}

const provider = new Provider(issuer, config);
if (ciIssuer) {
  const jwks = createRemoteJWKSet(new URL(`${ciIssuer}/jwks`));
  const JWT = 'urn:ietf:params:oauth:token-type:jwt';
  const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
  provider.registerGrantType(EXCHANGE, async (ctx) => {
    const { client, params } = ctx.oidc;
    if (params.subject_token_type !== JWT) {
      throw new errors.InvalidRequest('subject_token_type must be a JWT');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    try {
      await jwtVerify(params.subject_token, jwks, { issuer: ciIssuer, audience: ciAudience, algorithms: ['EdDSA'] });
    } catch (err) {
      throw new errors.InvalidGrant(`subject_token rejected: ${err.code || err.message}`);
    }
    const requested = (params.scope || '').split(' ').filter(Boolean);
    const allowed = new Set(client.scope.split(' '));
    const token = new provider.ClientCredentials({
      client,
      scope: requested.filter((s) => allowed.has(s)).join(' ') || undefined,
    });
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope || undefined,
    };
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'actor_token', 'actor_token_type']);
}
provider.on('server_error', (ctx, err) => {
  process.stderr.write(`interop server: server_error on ${ctx.method} ${ctx.path}: ${err?.stack || err}\n`);
});
if (verbose) {
  // Client-auth failures all answer "client authentication failed"; the
  // actual reason (wrong aud, replayed jti, ...) is only in error_detail.
  for (const event of ['grant.error', 'introspection.error']) {
    provider.on(event, (ctx, err) => {
      const cause = err.cause ? ` (cause: ${err.cause.message || err.cause})` : '';
      process.stderr.write(`interop server: ${event}: ${err.error || err.message}: ${err.error_detail || err.error_description || ''}${cause}\n`);
    });
  }
}
// The person of the login tests: signs in as user-1 and grants what the client asks for,
// with no page to fill in (the scripted user agent follows redirects with a cookie jar).
const callback = provider.callback();
async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: 'user-1' } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(String(details.params.scope || 'openid'));
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    res.statusCode = 500;
    res.end(`interaction failed: ${err?.message || err}`);
  }
}
server.on('request', (req, res) => (req.url.startsWith('/interaction/') ? interaction(req, res) : callback(req, res)));
mtlsServer?.on('request', callback);

// ---------------------------------------------------------------------------
// Lifetime
// ---------------------------------------------------------------------------
let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('data', () => {});
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

// ---------------------------------------------------------------------------
// Ready line
// ---------------------------------------------------------------------------
const clientInfo = {
  basic: { method: 'client_secret_basic', secret_file: secretFiles.basic },
  post: { method: 'client_secret_post', secret_file: secretFiles.post },
  'secret-jwt': { method: 'client_secret_jwt', alg: 'HS256', secret_file: secretFiles['secret-jwt'] },
  ...Object.fromEntries(Object.entries(pkClients).map(([id, { info }]) => [id, info])),
  introspector: { method: 'client_secret_basic', secret_file: secretFiles.introspector },
  dpop: { method: 'client_secret_basic', secret_file: secretFiles.dpop, dpop_bound_access_tokens: true },
  login: { method: 'client_secret_basic', secret_file: secretFiles.login, redirect_uri: loginRedirectUri },
};

process.stdout.write(`${JSON.stringify({
  issuer,
  discovery: `${issuer}/.well-known/openid-configuration`,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  scope: SCOPE,
  resource: RESOURCE,
  clients: clientInfo,
  wrong_key_file: wrongKeyFile,
  ...(mtls ? { mtls_token_endpoint: `${mtls.base}/token` } : {}),
})}\n`);
