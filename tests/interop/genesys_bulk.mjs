// A bulk job as a Genesys Cloud JavaScript SDK script runs one: GETs and PATCHes of users.
//
// Test-only driver: the integration tests run it with the real `purecloud-platform-client-v2`
// (pinned in package.json, installed by `npm ci --prefix tests/interop`) against the
// dev-server or a freshtoken gateway, and read the one JSON line it prints:
//
//   {"sdk": "javascript", "mode": ..., "calls": N, "ok": N, "unauthorized": N, "errors": N,
//    "token_client": ..., "max_version": N, "first_error": "401 bad.credentials", ...}
//
// token_client and max_version come from the answers' bodies (tokens/me's OAuthClient, the
// PATCHed user's version); first_error is the status and Genesys error code of the first
// failed call.
//
// Two modes:
//
// - `--mode host --base URL`: the SDK's API base set to URL and the access token given in the
//   environment (GENESYSCLOUD_ACCESS_TOKEN; never on the command line) set with
//   setAccessToken. The SDK's setEnvironment() always makes `https://api.<env>`, so the only
//   way it reaches a plain-HTTP loopback base is setGateway({host, protocol, port}): that is
//   what this mode uses, without path prefixes and without a login.
// - `--mode gateway --gateway-host H --gateway-port P [--gateway-protocol http]
//   [--path-login X] [--path-api Y]`: setGateway({...}) and then the SDK's own
//   loginClientCredentialsGrant(id, secret) with GENESYSCLOUD_OAUTHCLIENT_ID and
//   GENESYSCLOUD_OAUTHCLIENT_SECRET, as a script that authenticates itself does.
//
// Each of --count rounds is a GET of a user and a PATCH of it at the version read, then a
// pause of --pause seconds. The SDK refreshes only code-grant tokens and retries nothing, so
// every 401 the API gives reaches the script and is counted.

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
let platformClient;
try {
  platformClient = require('purecloud-platform-client-v2');
} catch (e) {
  process.stderr.write(
    'genesys_bulk.mjs: the Genesys JavaScript SDK is not installed; run scripts/test.sh, or: ' +
      'npm ci --prefix tests/interop\n',
  );
  process.exit(3);
}

function options() {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string' },
      base: { type: 'string' },
      'gateway-host': { type: 'string' },
      'gateway-port': { type: 'string', default: '-1' },
      'gateway-protocol': { type: 'string', default: 'http' },
      'path-login': { type: 'string', default: '' },
      'path-api': { type: 'string', default: '' },
      count: { type: 'string', default: '10' },
      pause: { type: 'string', default: '0.1' },
      users: { type: 'string', default: '3' },
    },
  });
  const usage = (msg) => {
    process.stderr.write(`genesys_bulk.mjs: ${msg}\n`);
    process.exit(2);
  };
  if (values.mode !== 'host' && values.mode !== 'gateway') usage('--mode host|gateway is required');
  if (values.mode === 'host' && !values.base) usage('--mode host needs --base');
  if (values.mode === 'gateway' && !values['gateway-host']) usage('--mode gateway needs --gateway-host');
  return values;
}

function env(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`genesys_bulk.mjs: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

// Status and error code of a failed call (Genesys' `code`, or OAuth's `error` for the login):
// never headers, never a token.
function describe(err) {
  // The login's failure is axios' own error, the answer under `response` (axios errors have a
  // `status` too, but no body); an API call's, with extended responses, is {status, body}.
  const answer = err && err.response && typeof err.response.status === 'number'
    ? { status: err.response.status, body: err.response.data }
    : err;
  if (answer && typeof answer.status === 'number') {
    const body = answer.body && typeof answer.body === 'object' ? answer.body : {};
    const code = body.code || body.error;
    return code ? `${answer.status} ${code}` : `${answer.status}`;
  }
  return err && err.name ? err.name : 'error';
}

async function call(counts, f) {
  counts.calls += 1;
  try {
    const r = await f();
    counts.ok += 1;
    return r;
  } catch (err) {
    if (err && err.status === 401) counts.unauthorized += 1;
    else counts.errors += 1;
    if (counts.first_error === undefined) counts.first_error = describe(err);
    return undefined;
  }
}

async function setUp(o, client, counts) {
  if (o.mode === 'host') {
    const base = new URL(o.base);
    const gateway = { host: base.hostname, protocol: base.protocol.replace(':', '') };
    if (base.port) gateway.port = Number(base.port);
    client.setGateway(gateway);
    client.setAccessToken(env('GENESYSCLOUD_ACCESS_TOKEN'));
    return;
  }
  const gateway = { host: o['gateway-host'], protocol: o['gateway-protocol'] };
  if (Number(o['gateway-port']) > -1) gateway.port = Number(o['gateway-port']);
  if (o['path-login']) gateway.path_params_login = o['path-login'];
  if (o['path-api']) gateway.path_params_api = o['path-api'];
  client.setGateway(gateway);
  counts.logins += 1;
  await client.loginClientCredentialsGrant(
    env('GENESYSCLOUD_OAUTHCLIENT_ID'),
    env('GENESYSCLOUD_OAUTHCLIENT_SECRET'),
  );
}

async function main() {
  const o = options();
  const counts = {
    sdk: 'javascript', sdk_version: '262.0.0', mode: o.mode,
    calls: 0, ok: 0, unauthorized: 0, errors: 0, logins: 0,
  };
  const client = platformClient.ApiClient.instance;
  // Errors then carry the HTTP status (without it they are the bare response body).
  client.setReturnExtendedResponses(true);
  try {
    await setUp(o, client, counts);
  } catch (err) {
    counts.login_error = describe(err);
    process.stdout.write(JSON.stringify(counts) + '\n');
    return 1;
  }
  const users = new platformClient.UsersApi();
  const tokens = new platformClient.TokensApi();
  const me = await call(counts, () => tokens.getTokensMe());
  // Whom the token belongs to, as the SDK handed the answer over.
  if (me && me.body && me.body.OAuthClient) counts.token_client = me.body.OAuthClient.id;
  const count = Number(o.count);
  const distinct = Math.max(Number(o.users), 1);
  const pauseMs = Number(o.pause) * 1000;
  for (let i = 0; i < count; i += 1) {
    const userId = `bulk-${i % distinct}`;
    const user = await call(counts, () => users.getUser(userId));
    const version = user && user.body && user.body.version ? user.body.version : 1;
    const updated = await call(counts, () => users.patchUser(userId, { version, department: `bulk round ${i}` }));
    // The version the server moved the user to.
    if (updated && updated.body && typeof updated.body.version === 'number') {
      counts.max_version = Math.max(counts.max_version || 0, updated.body.version);
    }
    if (pauseMs > 0 && i + 1 < count) await new Promise((r) => setTimeout(r, pauseMs));
  }
  process.stdout.write(JSON.stringify(counts) + '\n');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`genesys_bulk.mjs: ${err && err.message ? err.message : err}\n`);
    process.exit(5);
  },
);
