/**
 * Pairing and the admin surface, end to end against a real relay process: one-time codes (used
 * once, unknown, expired, guesses rate-limited), public-key validation, the agent's `pair` CLI
 * and its key file, the admin token on every admin endpoint, and write-only channel secrets.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { access, readFile, readdir, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { after, before } from 'node:test';
import { findPairing, hashPairingCode } from '../../server/pairing.ts';
import type { PairingRecord } from '../../server/store/types.ts';
import { ROOT, removeDir, startRelay, tempDir, type RelayHandle } from '../helpers/processes.ts';
import { dial, loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import { test } from '../helpers/store.ts';

const FIFTEEN_MIN_MS = 15 * 60_000;
const SECRET = 's3cret-value-123';

let relay: RelayHandle;
let publicUrl: string;
let channelId: string;
const dirs: string[] = [];
const codes: string[] = [];

before(async () => {
  relay = await startRelay();
  const channel = await relay.api<{ id: string; ingressUrl: string }>('POST', '/api/channels', {
    name: 'pairing',
  });
  channelId = channel.id;
  publicUrl = channel.ingressUrl.slice(0, -`/h/${channelId}`.length);
});

after(async () => {
  await relay?.stop();
  if (relay) await removeDir(relay.dataDir);
  for (const dir of dirs) await removeDir(dir);
});

// ---- helpers

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** An HTTP request from a chosen loopback address, so each test has its own rate-limit bucket. */
function send(
  method: string,
  urlPath: string,
  opts: { body?: unknown; headers?: Record<string, string>; from?: string } = {},
): Promise<Answer> {
  const url = new URL(urlPath, relay.url);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        method,
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        localAddress: opts.from ?? '127.0.0.1',
        agent: false,
        headers: {
          ...(payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function errorCode(answer: Answer): string {
  const body = JSON.parse(answer.text) as { error?: { code?: string } };
  return String(body.error?.code);
}

interface NewAgent {
  id: string;
  pairingCode: string;
  expiresAt: string;
}

async function addAgent(name: string): Promise<NewAgent> {
  const added = await relay.api<NewAgent>('POST', '/api/agents', { name, channels: [channelId] });
  codes.push(added.pairingCode);
  return added;
}

function newKey(): { privateKey: KeyObject; publicJwk: { kty: string; crv: string; x: string } } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { privateKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x) } };
}

function pairBody(code: string, publicKey: unknown): { code: string; publicKey: unknown } {
  return { code, publicKey };
}

async function tunnelStatus(identity: TestIdentity): Promise<'open' | number> {
  const result = await dial(relay.url, await mint(identity));
  if (result.ws) {
    const ws = result.ws;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'test done');
    });
    return 'open';
  }
  return result.status ?? 0;
}

/** Runs the agent CLI the way a user would: `node_modules/.bin/tsx agent/main.ts …`. */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['agent/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    // 'close' (not 'exit'): both output streams are fully read by then.
    child.once('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

// ---- codes

test('a new agent gets a pairing code that expires in the future, at most 15 min ahead', async () => {
  const before = Date.now();
  const added = await addAgent('expiry-check');
  const answeredAt = Date.now();
  const expiresAt = Date.parse(added.expiresAt);
  assert.ok(Number.isFinite(expiresAt), `expiresAt ${added.expiresAt} is a date`);
  assert.ok(expiresAt > answeredAt, `expiresAt ${added.expiresAt} is in the future`);
  assert.ok(
    expiresAt <= answeredAt + FIFTEEN_MIN_MS,
    `expiresAt is ${expiresAt - before} ms ahead, at most 15 min`,
  );
  assert.ok(added.pairingCode.length >= 12, 'the code is not trivially short');
});

test('a code pairs once; a second use is refused 401 and does not rebind the key', async () => {
  const from = '127.0.0.11';
  const added = await addAgent('once');
  const first = newKey();
  const ok = await send('POST', '/api/pair', {
    body: pairBody(added.pairingCode, first.publicJwk),
    from,
  });
  assert.equal(ok.status, 200, ok.text);
  const paired = JSON.parse(ok.text) as { agentId: string; relayUrl: string };
  assert.equal(paired.agentId, added.id);
  assert.equal(paired.relayUrl, publicUrl);

  const second = newKey();
  const again = await send('POST', '/api/pair', {
    body: pairBody(added.pairingCode, second.publicJwk),
    from,
  });
  assert.equal(again.status, 401, again.text);
  assert.equal(errorCode(again), 'ERR_PAIRING_CODE');

  // The key bound by the first use still authenticates the agent; the second key does not.
  const base = { agentId: added.id, audience: publicUrl, relayUrl: relay.url };
  assert.equal(await tunnelStatus({ ...base, privateKey: first.privateKey }), 'open');
  assert.equal(await tunnelStatus({ ...base, privateKey: second.privateKey }), 401);
});

test('of 8 concurrent pairings with one code, exactly one succeeds, and its key is the bound one', async () => {
  for (let round = 0; round < 3; round++) {
    const added = await addAgent(`race-${round}`);
    const keys = Array.from({ length: 8 }, () => newKey());
    // Each from its own address: the race is on the code, not on the rate limit.
    const answers = await Promise.all(
      keys.map((k, i) =>
        send('POST', '/api/pair', {
          body: pairBody(added.pairingCode, k.publicJwk),
          from: `127.0.${20 + round}.${i + 1}`,
        }),
      ),
    );
    const won = answers.flatMap((a, i) => (a.status === 200 ? [i] : []));
    assert.equal(won.length, 1, `round ${round}: statuses ${answers.map((a) => a.status)}`);
    for (const [i, a] of answers.entries()) {
      if (i === won[0]) continue;
      assert.equal(a.status, 401, a.text);
      assert.equal(errorCode(a), 'ERR_PAIRING_CODE');
    }
    const base = { agentId: added.id, audience: publicUrl, relayUrl: relay.url };
    for (const [i, k] of keys.entries()) {
      const status = await tunnelStatus({ ...base, privateKey: k.privateKey });
      assert.equal(status, i === won[0] ? 'open' : 401, `round ${round}, key ${i}`);
    }
  }
});

test('an unknown code, and the code of a revoked agent, are refused 401', async () => {
  const from = '127.0.0.12';
  const unknown = await send('POST', '/api/pair', {
    body: pairBody('ABCD-EFGH-JKMN', newKey().publicJwk),
    from,
  });
  assert.equal(unknown.status, 401, unknown.text);
  assert.equal(errorCode(unknown), 'ERR_PAIRING_CODE');

  const added = await addAgent('revoked-before-pairing');
  await relay.api('DELETE', `/api/agents/${added.id}`);
  const revoked = await send('POST', '/api/pair', {
    body: pairBody(added.pairingCode, newKey().publicJwk),
    from,
  });
  assert.equal(revoked.status, 401, revoked.text);
  assert.equal(errorCode(revoked), 'ERR_PAIRING_CODE');
});

test('findPairing: an expired code is not found (unit level, with `now` past expiresAt)', () => {
  const code = 'QRST-VWXY-Z234';
  const expiresAt = 1_700_000_000_000;
  const records: PairingRecord[] = [
    { codeHash: hashPairingCode('ABCD-EFGH-JKMN'), agentId: 'ag_other', expiresAt: expiresAt * 2 },
    { codeHash: hashPairingCode(code), agentId: 'ag_expiring', expiresAt },
  ];
  // Control: while live, the code finds its own pairing and only that one.
  assert.equal(findPairing(records, code, expiresAt - 1)?.agentId, 'ag_expiring');
  assert.equal(findPairing(records, code, expiresAt + 1), undefined);
  assert.equal(findPairing(records, code, expiresAt + FIFTEEN_MIN_MS), undefined);
  assert.equal(findPairing(records, 'ZZZZ-ZZZZ-ZZZZ', expiresAt - 1), undefined);
});

test('a public key with a private part or on the wrong curve is refused 400', async () => {
  const from = '127.0.0.13';
  const added = await addAgent('bad-keys');
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  const ed448 = generateKeyPairSync('ed448').publicKey.export({ format: 'jwk' });
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    format: 'jwk',
  });
  const good = newKey().publicJwk;
  const bad: [string, unknown][] = [
    ['Ed25519 with "d"', { kty: 'OKP', crv: 'Ed25519', x: ed.x, d: ed.d }],
    ['X25519', x25519],
    ['Ed448', ed448],
    ['EC P-256', p256],
    ['Ed25519 labelled, X25519 crv', { ...good, crv: 'X25519' }],
  ];
  for (const [what, publicKey] of bad) {
    const res = await send('POST', '/api/pair', {
      body: pairBody(added.pairingCode, publicKey),
      from,
    });
    assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
    assert.equal(errorCode(res), 'ERR_BAD_REQUEST', what);
    assert.ok(!res.text.includes(String(ed.d)), `${what}: the answer does not echo "d"`);
  }
  // The refusals changed nothing: the code is still unused and pairs with a proper key.
  const ok = await send('POST', '/api/pair', { body: pairBody(added.pairingCode, good), from });
  assert.equal(ok.status, 200, ok.text);
});

test('guessing is rate-limited: ≤ 10 wrong codes, then 429 with Retry-After, also for the right code', async () => {
  const from = '127.0.0.14';
  const added = await addAgent('rate-limited');
  const key = newKey().publicJwk;
  const statuses: number[] = [];
  let limited: Answer | undefined;
  for (let i = 0; i < 11; i++) {
    const wrong = `WRNG-${String(i).padStart(4, '0')}-CODE`;
    const res = await send('POST', '/api/pair', { body: pairBody(wrong, key), from });
    statuses.push(res.status);
    if (res.status === 429) {
      limited = res;
      break;
    }
  }
  assert.ok(limited, `no 429 after ${statuses.length} wrong codes: ${statuses.join(',')}`);
  const refusedBefore = statuses.slice(0, -1);
  assert.ok(refusedBefore.length <= 10, `${refusedBefore.length} guesses before the limit`);
  assert.deepEqual(
    refusedBefore,
    refusedBefore.map(() => 401),
  );
  const retryAfter = String(limited.headers['retry-after']);
  assert.match(retryAfter, /^[1-9][0-9]*$/, `Retry-After: ${retryAfter}`);
  assert.ok(Number(retryAfter) <= 60, `Retry-After ${retryAfter} s is a sane wait`);
  assert.equal(errorCode(limited), 'ERR_RATE_LIMITED');

  // The right code while limited: the same 429, nothing learned, nothing burnt.
  const right = await send('POST', '/api/pair', { body: pairBody(added.pairingCode, key), from });
  assert.equal(right.status, 429, right.text);
  assert.match(String(right.headers['retry-after']), /^[1-9][0-9]*$/);
  assert.equal(right.text, limited.text);

  // Another client is not limited by this one, and the code was not consumed while limited.
  const elsewhere = await send('POST', '/api/pair', {
    body: pairBody(added.pairingCode, key),
    from: '127.0.0.15',
  });
  assert.equal(elsewhere.status, 200, elsewhere.text);
  assert.equal((JSON.parse(elsewhere.text) as { agentId: string }).agentId, added.id);
});

// ---- the agent CLI

test('the agent CLI pair writes identity.json and agent.key (mode 0600)', async () => {
  const added = await addAgent('cli-agent');
  const parent = await tempDir('postern-pair-');
  dirs.push(parent);
  const stateDir = path.join(parent, 'state');
  const run = await runCli([
    'pair',
    '--relay',
    relay.url,
    '--code',
    added.pairingCode,
    '--state-dir',
    stateDir,
  ]);
  assert.equal(run.code, 0, `${run.stdout}${run.stderr}`);
  assert.ok(run.stdout.includes(added.id), `the CLI names the agent it paired: ${run.stdout}`);
  assert.deepEqual((await readdir(stateDir)).sort(), ['agent.key', 'identity.json']);
  const keyFile = path.join(stateDir, 'agent.key');
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
  const written = JSON.parse(await readFile(path.join(stateDir, 'identity.json'), 'utf8')) as {
    agentId: string;
    audience: string;
  };
  assert.equal(written.agentId, added.id);
  assert.equal(written.audience, publicUrl);
  assert.ok(!(await readFile(path.join(stateDir, 'identity.json'), 'utf8')).includes('PRIVATE'));

  // The stored key is the one the relay bound: a token it signs opens the tunnel.
  const identity = await loadIdentity(stateDir);
  assert.equal(await tunnelStatus(identity), 'open');

  // The private key never left the agent: not in the relay's output.
  const pem = await readFile(keyFile, 'utf8');
  const d = String(identity.privateKey.export({ format: 'jwk' }).d);
  const logs = relay.proc.raw.join('\n');
  const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'))[0]!;
  assert.ok(!logs.includes(body), 'the PEM is not in the relay logs');
  assert.ok(!logs.includes(d), 'the private scalar is not in the relay logs');
});

test('the agent CLI pair with a wrong code exits non-zero saying the code is unknown, used or expired', async () => {
  const parent = await tempDir('postern-pair-');
  dirs.push(parent);
  const stateDir = path.join(parent, 'state');
  const run = await runCli([
    'pair',
    '--relay',
    relay.url,
    '--code',
    'ABCD-EFGH-JKMN',
    '--state-dir',
    stateDir,
  ]);
  const output = `${run.stdout}${run.stderr}`;
  assert.notEqual(run.code, 0, output);
  assert.notEqual(run.code, null, output);
  assert.match(run.stderr, /unknown, used or expired/);
  assert.ok(!run.stdout.includes('Paired'), output);
  await assert.rejects(access(path.join(stateDir, 'agent.key')), { code: 'ENOENT' });
});

// ---- the admin token

test('every admin endpoint refuses a missing or wrong admin token with 401', async () => {
  const agent = await addAgent('admin-target');
  const ingress = await send('POST', `/h/${channelId}`, { body: { hello: 'world' } });
  assert.equal(ingress.status, 202, ingress.text);
  const eventId = (JSON.parse(ingress.text) as { id: string }).id;
  const eventBefore = await relay.api<{ status: string }>('GET', `/api/events/${eventId}`);
  const channelsBefore = await relay.api<unknown>('GET', '/api/channels');
  const agentsBefore = await relay.api<{ agents: { id: string }[] }>('GET', '/api/agents');

  const endpoints: [string, string, unknown][] = [
    ['GET', '/api/channels', undefined],
    ['POST', '/api/channels', { name: 'sneaky' }],
    ['GET', `/api/channels/${channelId}`, undefined],
    ['PATCH', `/api/channels/${channelId}`, { name: 'renamed' }],
    ['DELETE', `/api/channels/${channelId}`, undefined],
    ['POST', '/api/agents', { name: 'sneaky', channels: [channelId] }],
    ['GET', '/api/agents', undefined],
    ['DELETE', `/api/agents/${agent.id}`, undefined],
    ['GET', '/api/events', undefined],
    ['GET', `/api/events/${eventId}`, undefined],
    ['POST', `/api/events/${eventId}/replay`, undefined],
    ['GET', '/metrics', undefined],
  ];
  const credentials: [string, Record<string, string>][] = [
    ['missing', {}],
    ['wrong', { authorization: 'Bearer wrong-token' }],
    ['truncated', { authorization: `Bearer ${relay.token.slice(0, -1)}` }],
    ['not bearer', { authorization: relay.token }],
  ];
  for (const [method, p, body] of endpoints) {
    for (const [what, headers] of credentials) {
      const res = await send(method, p, { headers, ...(body === undefined ? {} : { body }) });
      assert.equal(res.status, 401, `${method} ${p} with a ${what} token: ${res.status}`);
      assert.equal(errorCode(res), 'ERR_UNAUTHORIZED', `${method} ${p} (${what})`);
      assert.ok(!res.text.includes(channelId), `${method} ${p} (${what}) reveals nothing`);
    }
  }
  // Control: the real token is accepted on the same surface.
  const metrics = await send('GET', '/metrics', {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  assert.equal(metrics.status, 200);

  // None of the refused requests changed anything.
  assert.deepEqual(await relay.api<unknown>('GET', '/api/channels'), channelsBefore);
  const agentsAfter = await relay.api<{ agents: { id: string }[] }>('GET', '/api/agents');
  assert.deepEqual(
    agentsAfter.agents.map((a) => a.id),
    agentsBefore.agents.map((a) => a.id),
  );
  const eventAfter = await relay.api<{ status: string; attempts: unknown[] }>(
    'GET',
    `/api/events/${eventId}`,
  );
  assert.equal(eventAfter.status, eventBefore.status);
});

test('channel answers never contain the verification secret', async () => {
  const created = await send('POST', '/api/channels', {
    headers: { authorization: `Bearer ${relay.token}` },
    body: { name: 'secretive', verify: { provider: 'github', secret: SECRET } },
  });
  assert.equal(created.status, 201, created.text);
  assert.ok(!created.text.includes(SECRET), `POST answer: ${created.text}`);
  const id = (JSON.parse(created.text) as { id: string }).id;
  const admin = { authorization: `Bearer ${relay.token}` };

  const list = await send('GET', '/api/channels', { headers: admin });
  assert.equal(list.status, 200);
  assert.ok(list.text.includes(id), 'the list shows the channel');
  assert.ok(!list.text.includes(SECRET), `GET /api/channels: ${list.text}`);

  const one = await send('GET', `/api/channels/${id}`, { headers: admin });
  assert.equal(one.status, 200);
  const view = JSON.parse(one.text) as { id: string; verify: { provider: string } | null };
  assert.equal(view.id, id);
  assert.equal(view.verify?.provider, 'github', 'the verification is configured');
  assert.ok(!one.text.includes(SECRET), `GET /api/channels/:id: ${one.text}`);

  const rotated = `${SECRET}-rotated`;
  const patched = await send('PATCH', `/api/channels/${id}`, {
    headers: admin,
    body: { verify: { provider: 'github', secret: rotated } },
  });
  assert.equal(patched.status, 200, patched.text);
  assert.ok(!patched.text.includes(SECRET), `PATCH answer: ${patched.text}`);
  assert.ok(!patched.text.includes(rotated), `PATCH answer: ${patched.text}`);
  const again = await send('GET', `/api/channels/${id}`, { headers: admin });
  assert.ok(!again.text.includes(rotated), `GET after PATCH: ${again.text}`);
});

test('the relay logs contain no pairing code, admin token or verification secret', () => {
  assert.ok(codes.length >= 6, `${codes.length} codes issued`);
  const logs = relay.proc.raw.join('\n');
  for (const code of codes) {
    assert.ok(!logs.includes(code), `pairing code ${code} in the logs`);
    assert.ok(!logs.includes(code.replace(/-/g, '')), `pairing code ${code} (no dashes)`);
  }
  assert.ok(!logs.includes(relay.token), 'the admin token is not in the logs');
  assert.ok(!logs.includes(SECRET), 'the verification secret is not in the logs');
});
