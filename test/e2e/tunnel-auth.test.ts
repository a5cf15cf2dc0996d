/**
 * Tunnel authentication, end to end against a real relay process: every forged, stale, replayed
 * or misdirected agent JWT is refused with 401 before any WebSocket exists; a valid one gets
 * `welcome`; revoking an agent closes its live tunnel at once (4003) and refuses it afterwards.
 */
import assert from 'node:assert/strict';
import {
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  type KeyObject,
} from 'node:crypto';
import { after, before } from 'node:test';
import { SignJWT } from 'jose';
import type { RawData, WebSocket } from 'ws';
import { decodeRelayFrame, encodeFrame } from '../../shared/codec.ts';
import type { RelayFrame } from '../../shared/protocol.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startRelay,
  type RelayHandle,
} from '../helpers/processes.ts';
import { dial, loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import { test } from '../helpers/store.ts';

const HEARTBEAT_MS = 5_000;
/** Close code the relay uses when an agent is revoked while connected (shared/protocol.ts). */
const CLOSE_REVOKED = 4003;

let relay: RelayHandle;
let channelId: string;
let identity: TestIdentity;
let other: TestIdentity;
const stateDirs: string[] = [];
const sockets: WebSocket[] = [];
/** Every token this suite sent, to check that none reaches the relay's logs. */
const sent: string[] = [];
/** Log lines of a relay process this suite restarted. */
const earlierLogs: string[] = [];

before(async () => {
  relay = await startRelay({ heartbeatMs: HEARTBEAT_MS });
  const channel = await relay.api<{ id: string }>('POST', '/api/channels', { name: 'auth' });
  channelId = channel.id;
  const main = await pairAgent(relay, [channelId], 'auth-agent');
  stateDirs.push(main.stateDir);
  identity = await loadIdentity(main.stateDir);
  const second = await pairAgent(relay, [channelId], 'other-agent');
  stateDirs.push(second.stateDir);
  other = await loadIdentity(second.stateDir);
});

after(async () => {
  for (const ws of sockets) ws.terminate();
  await relay?.stop();
  if (relay) await removeDir(relay.dataDir);
  for (const dir of stateDirs) await removeDir(dir);
});

// ---- helpers

const nowS = () => Math.floor(Date.now() / 1000);

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** The claims a valid token carries, with any of them overridden or removed (`undefined`). */
function claims(id: TestIdentity, o: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = nowS();
  const base: Record<string, unknown> = {
    iss: id.agentId,
    sub: id.agentId,
    aud: id.audience,
    iat,
    exp: iat + 60,
    jti: randomUUID(),
  };
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

/** Builds a compact JWS by hand, so that header, payload and signature are exactly ours. */
function craft(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  signer: (input: Buffer) => Buffer,
): string {
  const input = `${b64json(header)}.${b64json(payload)}`;
  return `${input}.${signer(Buffer.from(input, 'ascii')).toString('base64url')}`;
}

const ed25519 = (key: KeyObject) => (input: Buffer) => sign(null, input, key);
const hs256 = (secret: Buffer | string) => (input: Buffer) =>
  createHmac('sha256', secret).update(input).digest();

async function healthz(): Promise<number> {
  const res = await fetch(`${relay.url}/healthz`);
  await res.arrayBuffer();
  return res.status;
}

/** Dials and expects a 401 before any WebSocket exists, then checks the relay still serves. */
async function expectRefused(token: string | null, what: string): Promise<void> {
  if (token !== null) sent.push(token);
  const result = await dial(relay.url, token);
  if (result.ws) sockets.push(result.ws);
  assert.equal(result.ws, undefined, `${what}: no WebSocket may be opened`);
  assert.equal(result.status, 401, `${what}: refused with 401`);
  assert.equal(await healthz(), 200, `${what}: the relay still serves afterwards`);
}

/** Dials and expects the WebSocket to open. */
async function expectOpen(token: string, what: string): Promise<WebSocket> {
  sent.push(token);
  const result = await dial(relay.url, token);
  assert.equal(result.status, undefined, `${what}: not refused (got ${result.status})`);
  assert.ok(result.ws, `${what}: the WebSocket opened`);
  sockets.push(result.ws);
  return result.ws;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** The next frame from the relay, decoded; rejects if the socket closes or nothing comes. */
function nextFrame(ws: WebSocket, timeoutMs = 5_000): Promise<RelayFrame> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('no frame from the relay in time'));
    }, timeoutMs);
    const onMessage = (data: RawData, isBinary: boolean) => {
      cleanup();
      if (!isBinary) reject(new Error('the relay sent a text frame'));
      else resolve(decodeRelayFrame(toBuffer(data)));
    };
    const onClose = (code: number) => {
      cleanup();
      reject(new Error(`socket closed (${code}) before a frame arrived`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
  });
}

/** Sends `hello` and returns the relay's first answer. */
async function hello(ws: WebSocket): Promise<RelayFrame> {
  const frame = nextFrame(ws);
  ws.send(encodeFrame({ type: 'hello', protocol: 1, agentVersion: 'test' }));
  return frame;
}

function closed(ws: WebSocket): Promise<{ code: number; at: number }> {
  return new Promise((resolve) => {
    ws.once('close', (code: number) => resolve({ code, at: performance.now() }));
  });
}

async function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return;
  const done = closed(ws);
  ws.close(1000, 'test done');
  await done;
}

// ---- accepted

test('a valid token is accepted: the socket opens, hello gets welcome', async () => {
  const ws = await expectOpen(await mint(identity), 'valid token');
  const frame = await hello(ws);
  assert.equal(frame.type, 'welcome');
  if (frame.type !== 'welcome') return;
  assert.match(frame.sessionId, /^ses_\S+$/);
  assert.equal(frame.heartbeatMs, HEARTBEAT_MS);
  assert.ok(Number.isInteger(frame.window) && frame.window >= 1, `window ${frame.window}`);
  assert.deepEqual(frame.channels, [{ id: channelId, name: 'auth' }]);
  const listed = await eventually(
    async () => {
      const { agents } = await relay.api<{ agents: { id: string; connected: boolean }[] }>(
        'GET',
        '/api/agents',
      );
      const me = agents.find((a) => a.id === identity.agentId);
      return me?.connected === true ? me : undefined;
    },
    5_000,
    'the agent to be listed as connected',
  );
  assert.equal(listed.connected, true);
  await closeSocket(ws);
});

test('control: a hand-crafted EdDSA token (as the forgeries below are built) is accepted', async () => {
  const token = craft(
    { alg: 'EdDSA', typ: 'postern-agent+jwt' },
    claims(identity),
    ed25519(identity.privateKey),
  );
  const ws = await expectOpen(token, 'hand-crafted EdDSA token');
  const frame = await hello(ws);
  assert.equal(frame.type, 'welcome');
  await closeSocket(ws);
});

// ---- refused

test('no Authorization header, an empty bearer and a non-JWT bearer are refused 401', async () => {
  await expectRefused(null, 'no Authorization header');
  await expectRefused('', 'empty bearer');
  await expectRefused('not-a-jwt', 'non-JWT bearer');
});

test('a tampered payload (claim changed, signature kept) is refused 401', async () => {
  const valid = await mint(identity);
  const [header, payload, signature] = valid.split('.') as [string, string, string];
  const original = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  const variants: [string, Record<string, unknown>][] = [
    ['jti changed', { ...original, jti: randomUUID() }],
    ['exp changed', { ...original, exp: Number(original['exp']) - 10 }],
    [
      'iss/sub relabelled as another paired agent',
      { ...original, iss: other.agentId, sub: other.agentId },
    ],
  ];
  for (const [what, changed] of variants) {
    await expectRefused(`${header}.${b64json(changed)}.${signature}`, `tampered: ${what}`);
  }
  // The untampered original is still good (its refusals above were about the tampering).
  const ws = await expectOpen(valid, 'the untampered original');
  await closeSocket(ws);
});

test('alg "none" (unsigned) is refused 401', async () => {
  const header = b64json({ alg: 'none', typ: 'postern-agent+jwt' });
  const payload = b64json(claims(identity));
  await expectRefused(`${header}.${payload}.`, 'alg none, empty signature');
  const validSignature = (await mint(identity)).split('.')[2]!;
  await expectRefused(`${header}.${payload}.${validSignature}`, 'alg none, a stray signature');
});

test('HS256 with the agent public key as the HMAC secret is refused 401', async () => {
  const publicKey = createPublicKey(identity.privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  const x = String(jwk.x);
  const raw = Buffer.from(x, 'base64url');
  assert.equal(raw.length, 32);
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const secrets: [string, Buffer | string][] = [
    ['raw 32-byte public key', raw],
    ['SPKI PEM text', pem],
    ['JWK x string', x],
    ['JWK JSON text', JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x })],
  ];
  for (const [what, secret] of secrets) {
    const header = { alg: 'HS256', typ: 'postern-agent+jwt' };
    await expectRefused(craft(header, claims(identity), hs256(secret)), `HS256, secret = ${what}`);
  }
  // The same through jose, as an attacker with a JWT library would do it.
  const viaJose = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'postern-agent+jwt' })
    .setIssuer(identity.agentId)
    .setSubject(identity.agentId)
    .setAudience(identity.audience)
    .setIssuedAt()
    .setExpirationTime('60s')
    .setJti(randomUUID())
    .sign(new Uint8Array(raw));
  await expectRefused(viaJose, 'HS256 via jose, raw public key');
});

test('an expired token (beyond the 30 s clock tolerance) is refused 401', async () => {
  const now = nowS();
  await expectRefused(await mint(identity, { iat: now - 120, exp: now - 60 }), 'exp 60 s ago');
  await expectRefused(await mint(identity, { iat: now - 3600, exp: now - 3540 }), 'exp 1 h ago');
});

test('a token whose lifetime is over 60 s is refused 401', async () => {
  const now = nowS();
  await expectRefused(await mint(identity, { iat: now, exp: now + 120 }), 'exp = iat + 120');
  await expectRefused(await mint(identity, { iat: now, exp: now + 61 }), 'exp = iat + 61');
  await expectRefused(await mint(identity, { iat: now - 10, exp: now + 3600 }), 'exp = iat + 3610');
});

test('a token issued in the future (beyond the clock tolerance) is refused 401', async () => {
  const now = nowS();
  // Otherwise a token made now could be kept and used for an hour.
  await expectRefused(await mint(identity, { iat: now + 3600, exp: now + 3660 }), 'iat in 1 h');
  await expectRefused(await mint(identity, { iat: now + 120, exp: now + 180 }), 'iat in 2 min');
});

test('a wrong aud is refused 401', async () => {
  assert.notEqual(relay.url, identity.audience, 'dialled URL differs from the public URL');
  await expectRefused(await mint(identity, { aud: 'https://evil.example' }), 'foreign aud');
  // The URL the test dials is not the relay's public URL, so it is not a valid audience.
  await expectRefused(await mint(identity, { aud: relay.url }), 'aud = the dialled URL');
  await expectRefused(await mint(identity, { aud: `${identity.audience}/` }), 'aud + "/"');
});

test('a wrong or missing typ is refused 401', async () => {
  await expectRefused(await mint(identity, { typ: 'JWT' }), 'typ JWT');
  await expectRefused(await mint(identity, { typ: 'at+jwt' }), 'typ at+jwt');
  await expectRefused(
    craft({ alg: 'EdDSA' }, claims(identity), ed25519(identity.privateKey)),
    'no typ',
  );
});

test('a token without jti is refused 401', async () => {
  await expectRefused(await mint(identity, { jti: null }), 'no jti (jose)');
  await expectRefused(
    craft(
      { alg: 'EdDSA', typ: 'postern-agent+jwt' },
      claims(identity, { jti: undefined }),
      ed25519(identity.privateKey),
    ),
    'no jti (hand-crafted)',
  );
});

test('a replayed jti is refused 401: first use opens, second is refused', async () => {
  const jti = randomUUID();
  const token = await mint(identity, { jti });
  const ws = await expectOpen(token, 'first use');
  // While the first connection is still open…
  await expectRefused(token, 'the same token again');
  await closeSocket(ws);
  // …and after it closed.
  await expectRefused(token, 'the same token after the first socket closed');
  // A freshly signed token carrying the same jti is a replay too.
  const now = nowS();
  await expectRefused(await mint(identity, { jti, iat: now - 1, exp: now + 59 }), 'same jti');
});

test('a key that was never paired is refused 401, even with the real agent id', async () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  await expectRefused(await mint(identity, { key: privateKey }), 'unpaired key');
  // Another agent's paired key does not authenticate this agent either.
  await expectRefused(await mint(identity, { key: other.privateKey }), "another agent's key");
});

test('an iss that is no agent, or iss ≠ sub, is refused 401', async () => {
  const ghost = 'ag_00000000000000000000000000';
  await expectRefused(await mint(identity, { iss: ghost, sub: ghost }), 'iss = sub = no agent');
  await expectRefused(await mint(identity, { sub: other.agentId }), 'sub = another agent');
  await expectRefused(await mint(identity, { sub: ghost }), 'sub = no agent');
});

// ---- revocation

test('revoking an agent closes its live tunnel within 1 s (4003) and refuses it afterwards', async () => {
  const ws = await expectOpen(await mint(other), 'the agent to revoke');
  const welcome = await hello(ws);
  assert.equal(welcome.type, 'welcome');
  const close = closed(ws);
  const res = await fetch(`${relay.url}/api/agents/${other.agentId}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${relay.token}` },
  });
  const answeredAt = performance.now();
  assert.equal(res.status, 204, await res.text());
  const timeout = new Promise<'timeout'>((resolve) => {
    setTimeout(() => resolve('timeout'), 5_000).unref();
  });
  const outcome = await Promise.race([close, timeout]);
  assert.notEqual(outcome, 'timeout', 'the tunnel was closed after the revocation');
  if (outcome === 'timeout') return;
  const elapsedMs = outcome.at - answeredAt;
  console.log(`revocation: socket closed ${elapsedMs.toFixed(1)} ms after the DELETE answer`);
  assert.ok(elapsedMs < 1000, `closed ${elapsedMs.toFixed(1)} ms after the DELETE answer`);
  assert.equal(outcome.code, CLOSE_REVOKED);
  await expectRefused(await mint(other), 'a fresh valid token of the revoked agent');
  const { agents } = await relay.api<{ agents: { id: string }[] }>('GET', '/api/agents');
  assert.deepEqual(
    agents.map((a) => a.id).filter((id) => id === other.agentId),
    [],
  );
});

test('a token used before a relay restart is refused after it (used ids are durable)', async () => {
  const token = await mint(identity);
  await closeSocket(await expectOpen(token, 'first use before the restart'));
  const port = Number(new URL(relay.url).port);
  await relay.stop();
  earlierLogs.push(...relay.proc.raw);
  relay = await startRelay({ dataDir: relay.dataDir, port, heartbeatMs: HEARTBEAT_MS });
  await expectRefused(token, 'the same token after the restart');
  await closeSocket(await expectOpen(await mint(identity), 'a fresh token after the restart'));
});

// ---- afterwards

test('the relay still serves after all refusals, and no token reached its logs', async () => {
  assert.equal(await healthz(), 200);
  const ready = await fetch(`${relay.url}/readyz`);
  assert.equal(ready.status, 200, await ready.text());
  // The refused agent still connects with a fresh token: refusals cost it nothing.
  const ws = await expectOpen(await mint(identity), 'a fresh token after the refusals');
  assert.equal((await hello(ws)).type, 'welcome');
  await closeSocket(ws);
  assert.ok(sent.length >= 30, `${sent.length} tokens sent`);
  const logs = [...earlierLogs, ...relay.proc.raw].join('\n');
  const leaked = sent.filter((t) => t.length > 20 && logs.includes(t));
  assert.deepEqual(leaked, [], 'no token appears in a relay log line');
  const signatures = sent
    .map((t) => t.split('.')[2] ?? '')
    .filter((s) => s.length > 20 && logs.includes(s));
  assert.deepEqual(signatures, [], 'no token signature appears in a relay log line');
});
