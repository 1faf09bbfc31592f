// Keys and tokens for the JWT benchmarks (load.sh ficus-jwt / ficus-jwt-miss, callgrind.sh
// JWT=1): a fresh RSA 2048 key pair and RS256 access tokens signed with it.
//
//   node benches/jwt-tokens.js OUTDIR POOL
//
// Writes into OUTDIR:
//   public.pem  the public key (SPKI PEM), for the policy's public_key_file
//   token.txt   one valid token (the cache-hit scenarios send it on every request)
//   pool.txt    POOL distinct valid tokens, one a line (the cache-miss scenario)
//   bad.txt     token.txt with its signature's last byte changed (must be refused)
//
// The claims are shaped like a Keycloak access token (~1.3 KiB as a JWT), like those of
// the criterion bench plugins/benches/jwt_verify.rs: iss and aud match the policy that
// load.sh and callgrind.sh write, exp is ten years ahead, and every token of the pool has
// its own sub and jti.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const [outdir, poolArg] = process.argv.slice(2);
const pool = Number(poolArg);
if (!outdir || !Number.isInteger(pool) || pool < 0) {
  console.error("usage: node jwt-tokens.js OUTDIR POOL");
  process.exit(2);
}
const ISSUER = "https://idp.bench.invalid/realms/bench";
const AUDIENCE = "ficus-bench";

const { publicKey, privateKey } = crypto.generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs8", format: "pem" },
});
const key = crypto.createPrivateKey(privateKey);
const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const header = b64({ alg: "RS256", typ: "JWT", kid: "bench-1" });
const now = Math.floor(Date.now() / 1000);
const hex = (n, w) => n.toString(16).padStart(w, "0");

function token(n) {
  const payload = b64({
    exp: now + 10 * 365 * 24 * 3600,
    iat: now,
    jti: `6c3a2b9e-4f1d-4c8e-9a57-${hex(n, 12)}`,
    iss: ISSUER,
    aud: [AUDIENCE, "account"],
    sub: `f3b0c2d4-7a1e-4b6f-9c8d-${hex(n, 12)}`,
    typ: "Bearer",
    azp: "shop-web",
    session_state: "0d5e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
    acr: "1",
    "allowed-origins": ["https://shop.example.com"],
    realm_access: { roles: ["offline_access", "uma_authorization", "default-roles-shop", "customer"] },
    resource_access: { account: { roles: ["manage-account", "manage-account-links", "view-profile"] } },
    scope: "openid email profile orders:read orders:write",
    sid: "0d5e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
    email_verified: true,
    name: "Alice Example",
    preferred_username: "alice",
    given_name: "Alice",
    family_name: "Example",
    email: "alice@example.com",
  });
  const input = `${header}.${payload}`;
  const sig = crypto.sign("sha256", Buffer.from(input), key).toString("base64url");
  return `${input}.${sig}`;
}

fs.mkdirSync(outdir, { recursive: true });
fs.writeFileSync(path.join(outdir, "public.pem"), publicKey);
const one = token(0xffffffff);
fs.writeFileSync(path.join(outdir, "token.txt"), one + "\n");
// Flip the signature's first byte (all its bits are significant, unlike the last
// base64url character's padding bits).
const dot = one.lastIndexOf(".") + 1;
const bad = one.slice(0, dot) + (one[dot] === "A" ? "B" : "A") + one.slice(dot + 1);
fs.writeFileSync(path.join(outdir, "bad.txt"), bad + "\n");
const lines = [];
for (let n = 0; n < pool; n++) lines.push(token(n));
fs.writeFileSync(path.join(outdir, "pool.txt"), lines.length ? lines.join("\n") + "\n" : "");
console.error(`jwt-tokens.js: ${outdir}: 1 token of ${one.length} B, a pool of ${pool}`);
