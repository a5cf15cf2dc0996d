/**
 * Shared security state across relays (issue #13, item 4), three relays on one database:
 * revoking, re-pairing or changing an agent's grants through one relay closes its tunnels on
 * the others; a pairing code works once; a token id is accepted once; pairing and ingress rate
 * limits are not multiplied by the number of relays.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { WebSocket } from 'ws';
import { pairAgent, removeDir, type RelayHandle } from '../helpers/processes.ts';
import { dial, loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import { hello, startReplicas, type Replicas } from './support.ts';

let replicas: Replicas;
let relays: [RelayHandle, RelayHandle, RelayHandle];
let channelId = '';
let otherChannelId = '';
const dirs: string[] = [];

before(async () => {
  // Behind a proxy (as in production): each test's client address is its own X-Forwarded-For.
  replicas = await startReplicas(3, { extraArgs: ['--trust-proxy'] });
  relays = replicas.relays as typeof relays;
  channelId = (await relays[0].api('POST', '/api/channels', { name: 'sec' })).id;
  otherChannelId = (await relays[0].api('POST', '/api/channels', { name: 'sec-2' })).id;
});

after(async () => {
  await replicas?.close();
  for (const d of dirs) await removeDir(d);
});

/** A paired agent (added through relay A) and its identity, for raw tunnel sessions. */
async function pairedIdentity(name: string): Promise<TestIdentity> {
  const { stateDir } = await pairAgent(relays[0], [channelId], name);
  dirs.push(stateDir);
  return loadIdentity(stateDir);
}

/** A raw tunnel session of the agent on `relay`, past its welcome. */
async function session(identity: TestIdentity, relay: RelayHandle): Promise<WebSocket> {
  const { ws, status } = await dial(relay.url, await mint(identity));
  assert.ok(ws, `tunnel refused by ${relay.url}: ${status}`);
  assert.equal((await hello(ws)).type, 'welcome');
  return ws;
}

function closed(ws: WebSocket): Promise<{ code: number; at: number }> {
  return new Promise((resolve) => {
    ws.once('close', (code: number) => resolve({ code, at: performance.now() }));
  });
}

/** Waits for the close of each socket (bounded); returns codes and ms after `since`. */
async function closes(
  sockets: WebSocket[],
  since: number,
): Promise<{ code: number; ms: number }[]> {
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error('a tunnel was not closed within 10 s')), 10_000).unref(),
  );
  const all = await Promise.race([Promise.all(sockets.map(closed)), timeout]);
  return all.map((c) => ({ code: c.code, ms: Math.round(c.at - since) }));
}

function newPublicKey() {
  const { publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
}

async function pairRaw(relay: RelayHandle, code: string, from: string): Promise<number> {
  const res = await fetch(`${relay.url}/api/pair`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': from },
    body: JSON.stringify({ code, publicKey: newPublicKey() }),
  });
  await res.arrayBuffer();
  return res.status;
}

test('revoking an agent through relay A closes its tunnels on relays B and C', async (t) => {
  const id = await pairedIdentity('revoked');
  const sockets = [await session(id, relays[1]), await session(id, relays[2])];
  // Listening before the change: a close can come before the API's answer does.
  const closing = closes(sockets, performance.now());
  await relays[0].api('DELETE', `/api/agents/${id.agentId}`);
  const result = await closing;
  t.diagnostic(`closed after ${result.map((r) => r.ms).join(' and ')} ms`);
  assert.deepEqual(
    result.map((r) => r.code),
    [4003, 4003],
  );
  // And refused from now on, on every relay.
  for (const relay of relays) {
    assert.equal((await dial(relay.url, await mint(id))).status, 401);
  }
});

test('pairing again through relay C closes the old key’s tunnel on relay B', async (t) => {
  const id = await pairedIdentity('re-paired');
  const ws = await session(id, relays[1]);
  const { pairingCode } = await relays[0].api('POST', `/api/agents/${id.agentId}/pairing-code`);
  const closing = closes([ws], performance.now());
  assert.equal(await pairRaw(relays[2], pairingCode, '198.51.100.1'), 200);
  const [result] = await closing;
  t.diagnostic(`closed after ${result!.ms} ms`);
  assert.equal(result!.code, 4003);
  assert.equal((await dial(relays[1].url, await mint(id))).status, 401, 'the old key refused');
});

test('changing an agent’s grants through relay A makes its tunnel on relay B reconnect', async () => {
  const id = await pairedIdentity('regranted');
  const ws = await session(id, relays[1]);
  const closing = closes([ws], performance.now());
  await relays[0].api('PATCH', `/api/agents/${id.agentId}`, {
    channels: [channelId, otherChannelId],
  });
  const [result] = await closing;
  assert.equal(result!.code, 1001);
  // The new welcome grants both channels.
  const again = await dial(relays[1].url, await mint(id));
  assert.ok(again.ws);
  const welcome = await hello(again.ws);
  assert.equal(welcome.type, 'welcome');
  assert.deepEqual(
    welcome.type === 'welcome' ? welcome.channels.map((c) => c.id).sort() : [],
    [channelId, otherChannelId].sort(),
  );
  again.ws.close();
});

test('a pairing code sent to three relays at once pairs exactly once', async () => {
  const added = await relays[0].api('POST', '/api/agents', { name: 'once', channels: [channelId] });
  const statuses = await Promise.all(
    relays.map((r, i) => pairRaw(r, added.pairingCode, `198.51.100.${10 + i}`)),
  );
  assert.deepEqual([...statuses].sort(), [200, 401, 401]);
});

test('a token id is accepted once: the same token to three relays at once opens one tunnel', async () => {
  const id = await pairedIdentity('replayed');
  const token = await mint(id, { jti: randomUUID() });
  const results = await Promise.all(relays.map((r) => dial(r.url, token)));
  const opened = results.filter((r) => r.ws);
  assert.equal(opened.length, 1);
  assert.deepEqual(
    results.filter((r) => !r.ws).map((r) => r.status),
    [401, 401],
  );
  // Later, to any relay, still refused.
  for (const relay of relays) assert.equal((await dial(relay.url, token)).status, 401);
  for (const r of opened) r.ws!.close();
});

test('pairing guesses from one address: 10 in all, not 10 per relay', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    statuses.push(await pairRaw(relays[i % 3]!, 'AAAA-BBBB-CCCC', '203.0.113.7'));
  }
  assert.deepEqual(statuses, [...Array<number>(10).fill(401), 429, 429]);
});

test('an ingress rate limit holds across relays: 60 requests, 30 of burst', async (t) => {
  const channel = await relays[0].api('POST', '/api/channels', {
    name: 'limited',
    rateLimit: { perSecond: 1, burst: 30 },
  });
  const started = performance.now();
  const statuses = await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const res = await fetch(`${relays[i % 3]!.url}/h/${channel.id}`, {
        method: 'POST',
        body: `n=${i}`,
      });
      await res.arrayBuffer();
      return res.status;
    }),
  );
  const seconds = Math.ceil((performance.now() - started) / 1000);
  const accepted = statuses.filter((s) => s === 202).length;
  const limited = statuses.filter((s) => s === 429).length;
  t.diagnostic(`${accepted} accepted, ${limited} limited in ${seconds} s`);
  assert.equal(accepted + limited, 60);
  // The burst, plus at most one token per second that passed: never 30 per relay.
  assert.ok(accepted >= 30 && accepted <= 30 + seconds, `${accepted} accepted`);
  const listed = await relays[1].api('GET', `/api/events?channel=${channel.id}&limit=100`);
  assert.equal(listed.events.length, accepted);
});
