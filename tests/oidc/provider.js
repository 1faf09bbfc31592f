// A real OpenID provider (npm oidc-provider, pinned in package.json) for ficus's integration
// tests. tests/common/oidc.rs starts it with `node tests/oidc/provider.js` on a free loopback
// port and waits for the "listening" line below; tests/run.sh runs `npm ci` here first.
//
// Everything comes from the environment (or `--port N` on the command line):
//
//   OIDC_PORT              port on 127.0.0.1 (required, or --port); the issuer is
//                          http://127.0.0.1:PORT
//   OIDC_CLIENT_ID         the client-credentials client (default "ficus-test")
//   OIDC_CLIENT_SECRET     its secret (default "ficus-test-secret")
//   OIDC_SCOPES            scopes the client and the resource servers allow
//                          (default "orders:read orders:write")
//   OIDC_RESOURCE          resource indicator whose access tokens are RS256 JWTs, with this
//                          value as `aud` (default "urn:api:shop")
//   OIDC_OPAQUE_RESOURCE   resource indicator whose access tokens are opaque (default
//                          "urn:api:shop:opaque"). oidc-provider refuses to introspect JWT
//                          access tokens (unsupported_token_type), so RFC 7662
//                          introspection is tested with these.
//   OIDC_TOKEN_TTL         access token lifetime in seconds (default 600)
//   OIDC_JWKS_FILE         a private JWKS ({"keys":[...]}) to sign with, instead of a key
//                          generated at start. This is the hook for key rotation: restart
//                          the provider on the same port with another file. The first key
//                          signs; the others are still published at jwks_uri.
//
// Revocation (RFC 7009, POST /token/revocation) is enabled next to introspection, so a
// test can revoke an opaque token and see the gateway refuse it.
//
// Every request is counted by path (without the query) and logged as one line,
// `oidc-provider GET /jwks`, so tests can see how often the gateway fetched the JWKS.
// `GET /__test/counts` answers the counts so far as JSON, e.g.
// {"/jwks": 2, "/.well-known/openid-configuration": 1, "/token": 3, "/token/introspection": 0}
// (those four paths are always present; any other path once requested). It is not
// counted itself, and it is not part of oidc-provider: nothing but a test asks for it.
//
// Every token issued is logged ("oidc-provider token issued: ..."), so tests can count the
// token requests a client made. SIGTERM and SIGINT close the listener and exit 0.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

function setting(name, fallback) {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

function portFromArgs() {
  const i = process.argv.indexOf('--port');
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(portFromArgs() ?? setting('OIDC_PORT'));
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('provider.js: give the port as OIDC_PORT=N or --port N');
  process.exit(2);
}
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;
const clientId = setting('OIDC_CLIENT_ID', 'ficus-test');
const clientSecret = setting('OIDC_CLIENT_SECRET', 'ficus-test-secret');
const scopes = setting('OIDC_SCOPES', 'orders:read orders:write');
const jwtResource = setting('OIDC_RESOURCE', 'urn:api:shop');
const opaqueResource = setting('OIDC_OPAQUE_RESOURCE', 'urn:api:shop:opaque');
const tokenTtl = Number(setting('OIDC_TOKEN_TTL', '600'));

// An RS256 signing key made now, or the keys of OIDC_JWKS_FILE.
function signingKeys() {
  const file = setting('OIDC_JWKS_FILE');
  if (file) {
    const jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
      throw new Error(`${file}: no "keys"`);
    }
    return jwks;
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    keys: [{ ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' }],
  };
}

const resourceServers = {
  [jwtResource]: {
    scope: scopes,
    audience: jwtResource,
    accessTokenTTL: tokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  },
  [opaqueResource]: {
    scope: scopes,
    audience: opaqueResource,
    accessTokenTTL: tokenTtl,
    accessTokenFormat: 'opaque',
  },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: scopes,
    },
  ],
  jwks: signingKeys(),
  scopes: ['openid', 'offline_access', ...scopes.split(' ')],
  ttl: { ClientCredentials: tokenTtl },
  // Fixed keys only so that oidc-provider does not warn about generated ones; nothing here
  // uses cookies (no interactive login).
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect (there is one, and it is confidential).
      allowedPolicy: async () => true,
    },
    revocation: {
      enabled: true,
      // Any authenticated client may revoke (the same single confidential client).
      allowedPolicy: async () => true,
    },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` gets no resource server (an opaque token).
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const info = resourceServers[resourceIndicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
    },
  },
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
// One line per token issued, so tests can count token requests (OidcProvider::tokens_issued).
provider.on('grant.success', (ctx) => console.log(`oidc-provider token issued: client ${ctx.oidc.client?.clientId} grant ${ctx.oidc.params?.grant_type}`));
provider.on('grant.error', (_ctx, err) => console.error('oidc-provider grant.error:', err.message, err.error_description ?? ''));

// Requests per path, for GET /__test/counts.
const COUNTS_PATH = '/__test/counts';
// No prototype: a request path is only ever a key here.
const counts = Object.assign(Object.create(null), {
  '/jwks': 0,
  '/.well-known/openid-configuration': 0,
  '/token': 0,
  '/token/introspection': 0,
});

function pathOf(url) {
  try {
    return new URL(url, issuer).pathname;
  } catch {
    return url;
  }
}
const handle = provider.callback();

const server = http.createServer((req, res) => {
  const path = pathOf(req.url);
  if (req.method === 'GET' && path === COUNTS_PATH) {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(counts));
    return;
  }
  counts[path] = (counts[path] ?? 0) + 1;
  console.log(`oidc-provider ${req.method} ${path}`);
  handle(req, res);
});
server.listen(port, host, () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
server.on('error', (err) => {
  console.error(`provider.js: ${err.message}`);
  process.exit(1);
});

function stop(signal) {
  console.log(`oidc-provider stopping on ${signal}`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
