// server.js - oidc-provider (npm, pinned in package-lock.json) as an OAuth 2.0
// authorization server that apicred's oauth2 layer did not write, for
// tests/integration/oauth2-oidc.sh. HTTPS on 127.0.0.1 with the sandbox's
// test-time certificates; client certificates are requested (mTLS) and
// checked against the sandbox's client CA.
//
//   node server.js DIR     DIR holds server.pem server.key client-ca.pem,
//                          rsa.pub ec.pub (private_key_jwt keys, PEM) and
//                          self.pem (the self-signed client certificate);
//                          the server writes DIR/oidc.port once it listens.
//
// Clients (all client_credentials, introspectable by "introspector"):
//   pkjwt        private_key_jwt, RS256/PS256 (kid rsa1) or ES256 (kid ec1)
//   csjwt        client_secret_jwt (HS256)
//   tls          tls_client_auth, subject CN=sb-client, certificate-bound tokens
//   selfsigned   self_signed_tls_client_auth with self.pem
//   basic        client_secret_basic (the DPoP tests' client)
//   fapi         private_key_jwt (kid fapi-signing-1), certificate-bound tokens
// DPoP is on. A token request with "X-Test-Nonce: 1" must carry a server
// nonce. GET/POST /resource accepts a DPoP-bound token with a valid proof
// (replays refused); /resource-nonce also wants the resource nonce.
import { createHash, createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';

import { jwtVerify, EmbeddedJWK, calculateJwkThumbprint, generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node server.js DIR');
  process.exit(2);
}
const file = (name) => readFileSync(path.join(dir, name));
const pubJwk = (name, kid) => ({ ...createPublicKey(file(name)).export({ format: 'jwk' }), kid });
const b64url = (buf) => Buffer.from(buf).toString('base64url');

const CSJWT_SECRET = 'csjwt-secret-0123456789abcdefghijklmnopqrstuvwxyz';

const selfCert = new X509Certificate(file('self.pem'));
const selfJwk = {
  ...selfCert.publicKey.export({ format: 'jwk' }),
  kid: 'self1',
  x5c: [selfCert.raw.toString('base64')],
};

const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  id_token_signed_response_alg: 'ES256', // the server's only key
};
const clients = [
  { ...common, client_id: 'pkjwt', token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [pubJwk('rsa.pub', 'rsa1'), pubJwk('ec.pub', 'ec1')] } },
  { ...common, client_id: 'csjwt', client_secret: CSJWT_SECRET,
    token_endpoint_auth_method: 'client_secret_jwt' },
  { ...common, client_id: 'tls', token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: 'CN=sb-client',
    tls_client_certificate_bound_access_tokens: true },
  { ...common, client_id: 'selfsigned', token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: [selfJwk] }, tls_client_certificate_bound_access_tokens: true },
  { ...common, client_id: 'basic', client_secret: 'basic-secret',
    token_endpoint_auth_method: 'client_secret_basic' },
  // conf.d/fapi-client.conf: mTLS + private_key_jwt, certificate-bound tokens.
  { ...common, client_id: 'fapi', token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [pubJwk('rsa.pub', 'fapi-signing-1')] }, scope: 'accounts',
    tls_client_certificate_bound_access_tokens: true },
  { ...common, client_id: 'introspector', client_secret: 'introspector-secret',
    token_endpoint_auth_method: 'client_secret_basic' },
];

// The server's own signing key (unused by client_credentials, but required).
const { privateKey } = await generateKeyPair('ES256');
const serverJwk = { ...(await exportJWK(privateKey)), kid: 'server', use: 'sig', alg: 'ES256' };

const peerCert = (ctx) => {
  const c = ctx.socket?.getPeerX509Certificate?.();
  return c || undefined;
};

const server = https.createServer({
  key: file('server.key'),
  cert: file('server.pem'),
  ca: file('client-ca.pem'),
  requestCert: true,
  rejectUnauthorized: false, // self-signed clients too; tls_client_auth checks below
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `https://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [serverJwk] },
  scopes: ['openid', 'accounts'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt',
    'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256'],
    dPoPSigningAlgValues: ['ES256'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: (ctx) => ctx.get('X-Test-Nonce') === '1',
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: peerCert,
      certificateAuthorized: (ctx) => ctx.socket?.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => {
        const c = peerCert(ctx);
        // Node prints the subject as "O=...\nCN=..."; the client registers "CN=...".
        return property === 'tls_client_auth_subject_dn' && !!c &&
          c.subject.split('\n').includes(expected);
      },
    },
  },
});

// ---- the resource server ------------------------------------------------
const seen = new Set(); // jti of every accepted proof: a replay is refused
const rsNonce = b64url(randomBytes(16));

const refuse = (res, status, error, description, extra = {}) => {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'WWW-Authenticate': `DPoP error="${error}", error_description="${description}"`,
    ...extra,
  });
  res.end(JSON.stringify({ error, error_description: description }));
};

async function resource(req, res, url) {
  const auth = req.headers.authorization || '';
  const proof = req.headers.dpop;
  if (!auth.startsWith('DPoP ') || !proof) {
    return refuse(res, 401, 'invalid_request', 'DPoP token and proof required');
  }
  const token = auth.slice(5);
  const at = await provider.ClientCredentials.find(token);
  if (!at) {
    return refuse(res, 401, 'invalid_token', 'unknown or expired token');
  }
  let payload;
  let protectedHeader;
  try {
    ({ payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK,
      { typ: 'dpop+jwt', algorithms: ['ES256'] }));
  } catch (e) {
    return refuse(res, 401, 'invalid_dpop_proof', `bad proof: ${e.message}`);
  }
  const htu = `${issuer}${url.pathname}`;
  const ath = b64url(createHash('sha256').update(token).digest());
  const problems = [];
  if (payload.htm !== req.method) problems.push('htm');
  if (payload.htu !== htu) problems.push('htu');
  if (payload.ath !== ath) problems.push('ath');
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > 300) problems.push('iat');
  if (typeof payload.jti !== 'string' || !payload.jti) problems.push('jti');
  if (await calculateJwkThumbprint(protectedHeader.jwk) !== at.jkt) problems.push('jkt');
  if (problems.length) {
    return refuse(res, 401, 'invalid_dpop_proof', `proof mismatch: ${problems.join(',')}`);
  }
  if (url.pathname === '/resource-nonce' && payload.nonce !== rsNonce) {
    return refuse(res, 401, 'use_dpop_nonce', 'resource server requires a nonce',
      { 'DPoP-Nonce': rsNonce });
  }
  if (seen.has(payload.jti)) {
    return refuse(res, 401, 'invalid_dpop_proof', 'DPoP proof replayed');
  }
  seen.add(payload.jti);
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({
    ok: true, client_id: at.clientId, htm: payload.htm, htu: payload.htu,
    nonce: payload.nonce ?? null,
  }));
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/resource' || url.pathname === '/resource-nonce') {
    resource(req, res, url).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
    return;
  }
  callback(req, res);
});

// Atomically, so the test never reads half a number.
writeFileSync(path.join(dir, 'oidc.port.tmp'), `${port}\n`);
renameSync(path.join(dir, 'oidc.port.tmp'), path.join(dir, 'oidc.port'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
