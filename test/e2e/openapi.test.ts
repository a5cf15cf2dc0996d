/**
 * The admin API answers as docs/openapi.json says, success and error, for channels, agents,
 * pairing and events, on a real relay with a real agent; and the relay serves the document.
 * Every request here goes through `call`, which checks the answer against the document (as
 * `RelayHandle.api` does for every other e2e test).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import { checkAnswer, loadOpenApi, OPENAPI_FILE, validate } from '../helpers/openapi.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const doc = loadOpenApi();
let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle | undefined;
const dirs: string[] = [];

before(async () => {
  // The app fails every request with a body and a header: failed attempts to show.
  app = await startApp((_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain', 'x-app': 'down' });
    res.end('database is down');
  });
  relay = await startRelay();
  dirs.push(relay.dataDir);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  for (const d of dirs) await removeDir(d);
});

interface Answer {
  status: number;
  body: any;
  text: string;
}

/** One admin request; the answer must be one the document describes for it. */
async function call(
  method: string,
  path: string,
  body?: unknown,
  token: string | null = relay.token,
): Promise<Answer> {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  checkAnswer(doc, method, path, res.status, text);
  return { status: res.status, text, body: text === '' ? undefined : JSON.parse(text) };
}

const expectError = (a: Answer, status: number, code: string) => {
  assert.equal(a.status, status, a.text);
  assert.equal(a.body.error.code, code, a.text);
};

test('GET /api/openapi.json serves docs/openapi.json, behind the admin token', async () => {
  const served = await call('GET', '/api/openapi.json');
  assert.equal(served.status, 200);
  assert.equal(served.text, await readFile(OPENAPI_FILE, 'utf8'));
  expectError(await call('GET', '/api/openapi.json', undefined, null), 401, 'ERR_UNAUTHORIZED');
});

test('every /api route the running relay lists is in the document, and nothing else', async () => {
  const line = await relay.proc.waitForMsg('http routes');
  const listed = (line['routes'] as { method: string; path: string }[])
    .filter((r) => r.path.startsWith('/api'))
    .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`)
    .sort();
  const documented = Object.entries(doc.paths)
    .flatMap(([p, item]) =>
      Object.keys(item)
        .filter((k) => ['get', 'post', 'patch', 'put', 'delete'].includes(k))
        .map((m) => `${m.toUpperCase()} ${p}`),
    )
    .sort();
  assert.ok(listed.length > 0);
  assert.deepEqual(listed, documented);
});

test('channels: create, list, show, change, delete, and their errors', async () => {
  const created = await call('POST', '/api/channels', {
    name: 'docs-a',
    verify: {
      provider: 'hmac',
      secret: 's3cret',
      header: 'X-Sig',
      algorithm: 'sha256',
      encoding: 'hex',
      prefix: 'sha256=',
    },
    ordered: true,
    orderingKey: { header: 'X-Key' },
    rateLimit: { perSecond: 5 },
    methods: ['POST'],
    paths: ['/push'],
  });
  assert.equal(created.status, 201);
  assert.equal(created.body.verify.rotating, false);
  assert.ok(!created.text.includes('s3cret'));
  const id: string = created.body.id;
  expectError(await call('POST', '/api/channels', { name: 'docs-a' }), 409, 'ERR_BAD_REQUEST');
  expectError(await call('POST', '/api/channels', { name: '' }), 400, 'ERR_BAD_REQUEST');
  expectError(await call('POST', '/api/channels', '{not json'), 400, 'ERR_BAD_REQUEST');
  expectError(
    await call('POST', '/api/channels', { name: 'x', colour: 1 }),
    400,
    'ERR_BAD_REQUEST',
  );
  expectError(await call('POST', '/api/channels', undefined, null), 401, 'ERR_UNAUTHORIZED');

  const list = await call('GET', '/api/channels');
  assert.deepEqual(
    list.body.channels.map((c: { id: string }) => c.id),
    [id],
  );
  assert.equal((await call('GET', `/api/channels/${id}`)).body.name, 'docs-a');
  assert.equal((await call('GET', '/api/channels/docs-a')).body.id, id);
  expectError(await call('GET', '/api/channels/ch_none'), 404, 'ERR_NOT_FOUND');

  const changed = await call('PATCH', `/api/channels/${id}`, {
    name: 'docs-b',
    verify: null,
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    response: { mode: 'sync', timeoutMs: 5000 },
    retry: { delaysMs: [10, 20] },
  });
  assert.equal(changed.status, 200);
  assert.equal(changed.body.verify, null);
  assert.deepEqual(changed.body.response, { mode: 'sync', timeoutMs: 5000 });
  expectError(await call('PATCH', `/api/channels/${id}`, { retry: 3 }), 400, 'ERR_BAD_REQUEST');
  expectError(
    await call('PATCH', '/api/channels/ch_none', { ordered: true }),
    404,
    'ERR_NOT_FOUND',
  );

  const removed = await call('DELETE', `/api/channels/${id}`);
  assert.equal(removed.status, 204);
  assert.equal(removed.text, '');
  expectError(await call('DELETE', `/api/channels/${id}`), 404, 'ERR_NOT_FOUND');
});

test('agents and pairing: add, pair, change, new code, revoke, and their errors', async () => {
  await call('POST', '/api/channels', { name: 'docs-agents' });
  const added = await call('POST', '/api/agents', {
    name: 'docs-agent',
    channels: ['docs-agents'],
  });
  assert.equal(added.status, 201);
  assert.equal(added.body.paired, false);
  const id: string = added.body.id;
  expectError(
    await call('POST', '/api/agents', { name: 'x', channels: [] }),
    400,
    'ERR_BAD_REQUEST',
  );
  expectError(
    await call('POST', '/api/agents', { name: 'x', channels: ['nope'] }),
    400,
    'ERR_BAD_REQUEST',
  );

  const publicKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
  expectError(
    await call('POST', '/api/pair', { code: 'AAAA-BBBB-CCCC', publicKey }, null),
    401,
    'ERR_PAIRING_CODE',
  );
  expectError(
    await call(
      'POST',
      '/api/pair',
      { code: added.body.pairingCode, publicKey: { kty: 'RSA' } },
      null,
    ),
    400,
    'ERR_BAD_REQUEST',
  );
  const paired = await call('POST', '/api/pair', { code: added.body.pairingCode, publicKey }, null);
  assert.equal(paired.status, 200);
  assert.equal(paired.body.agentId, id);
  assert.deepEqual(
    paired.body.channels.map((c: { name: string }) => c.name),
    ['docs-agents'],
  );

  const list = await call('GET', '/api/agents');
  assert.equal(list.body.agents.find((a: { id: string }) => a.id === id).paired, true);
  await call('POST', '/api/channels', { name: 'docs-agents-2' });
  const changed = await call('PATCH', `/api/agents/${id}`, {
    channels: ['docs-agents', 'docs-agents-2'],
  });
  assert.equal(changed.body.channels.length, 2);
  expectError(await call('PATCH', `/api/agents/${id}`, { name: 'y' }), 400, 'ERR_BAD_REQUEST');
  expectError(
    await call('PATCH', '/api/agents/ag_none', { channels: ['docs-agents'] }),
    404,
    'ERR_NOT_FOUND',
  );

  const again = await call('POST', `/api/agents/${id}/pairing-code`);
  assert.equal(again.status, 201);
  assert.notEqual(again.body.pairingCode, added.body.pairingCode);
  expectError(await call('POST', '/api/agents/ag_none/pairing-code'), 404, 'ERR_NOT_FOUND');

  assert.equal((await call('DELETE', `/api/agents/${id}`)).status, 204);
  expectError(await call('DELETE', `/api/agents/${id}`), 404, 'ERR_NOT_FOUND');
});

test('events: list, show with failed attempts, skip, replay one and in bulk, and their errors', async () => {
  const channel = await call('POST', '/api/channels', {
    name: 'docs-events',
    retry: { delaysMs: [60_000] },
  });
  const channelId: string = channel.body.id;
  const paired = await pairAgent(relay, ['docs-events'], 'docs-deliverer');
  dirs.push(paired.stateDir);
  agent = await startAgent(paired.stateDir, [{ channel: 'docs-events', target: app.url }]);

  const sent = await fetch(`${relay.url}/h/${channelId}/push?x=1`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"hello":"docs"}',
  });
  assert.equal(sent.status, 202);
  const { id } = (await sent.json()) as { id: string };

  // One failed attempt, then a retry parked a minute away.
  const failed = await eventually(async () => {
    const e = await call('GET', `/api/events/${id}`);
    return e.body.attempts.length === 1 && e.body.status === 'queued' ? e : undefined;
  });
  assert.equal(failed.body.attempts[0].outcome, 'failed');
  assert.equal(failed.body.attempts[0].status, 500);
  assert.equal(Buffer.from(failed.body.body, 'base64').toString(), '{"hello":"docs"}');

  const page = await call('GET', `/api/events?channel=docs-events&limit=10`);
  assert.deepEqual(
    page.body.events.map((e: { id: string }) => e.id),
    [id],
  );
  assert.equal(page.body.next, null);
  expectError(await call('GET', '/api/events?limit=0'), 400, 'ERR_BAD_REQUEST');
  expectError(await call('GET', '/api/events?status=lost'), 400, 'ERR_BAD_REQUEST');
  expectError(await call('GET', '/api/events?channel=nope'), 404, 'ERR_NOT_FOUND');
  expectError(await call('GET', '/api/events/evt_none'), 404, 'ERR_NOT_FOUND');

  const skipped = await call('POST', `/api/events/${id}/skip`);
  assert.equal(skipped.status, 200);
  assert.equal(skipped.body.status, 'failed');
  expectError(await call('POST', `/api/events/${id}/skip`), 409, 'ERR_CONFLICT');
  expectError(await call('POST', '/api/events/evt_none/skip'), 404, 'ERR_NOT_FOUND');

  const replayed = await call('POST', `/api/events/${id}/replay`);
  assert.equal(replayed.status, 202);
  assert.equal(replayed.body.status, 'queued');
  expectError(await call('POST', '/api/events/evt_none/replay'), 404, 'ERR_NOT_FOUND');
  // Replayed: a second failed attempt, then skipped again so that bulk replay finds it.
  await eventually(async () => {
    const e = await call('GET', `/api/events/${id}`);
    return e.body.attempts.length === 3 && e.body.status === 'queued' ? e : undefined;
  });
  await call('POST', `/api/events/${id}/skip`);

  const bulk = await call('POST', '/api/events/replay', { channel: 'docs-events' });
  assert.equal(bulk.status, 202);
  assert.deepEqual(bulk.body, { queued: 1 });
  expectError(
    await call('POST', '/api/events/replay', { status: 'queued' }),
    400,
    'ERR_BAD_REQUEST',
  );
  expectError(await call('POST', '/api/events/replay', { since: 'soon' }), 400, 'ERR_BAD_REQUEST');
  expectError(await call('POST', '/api/events/replay', { channel: 'nope' }), 404, 'ERR_NOT_FOUND');
});

test('a rejected event and its refused replay are answered as documented', async () => {
  const channel = await call('POST', '/api/channels', {
    name: 'docs-rejected',
    verify: { provider: 'github', secret: 'gh-secret' },
  });
  expectError(await call('GET', '/api/stream?channel=nope'), 404, 'ERR_NOT_FOUND');
  // The stream's `data` lines are Events as the document describes them.
  const abort = new AbortController();
  const stream = await fetch(`${relay.url}/api/stream?channel=docs-rejected`, {
    headers: { authorization: `Bearer ${relay.token}` },
    signal: abort.signal,
  });
  checkAnswer(doc, 'GET', '/api/stream', stream.status, '');
  assert.equal(stream.status, 200);
  assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = stream.body!.getReader();
  let buffered = '';
  await reader.read(); // `: connected`: the subscription is in place
  const sent = await fetch(`${relay.url}/h/${channel.body.id}`, { method: 'POST', body: '{}' });
  assert.equal(sent.status, 401);
  for (let i = 0; i < 100 && !/^data: .*\n/m.test(buffered); i++) {
    const chunk = await reader.read();
    if (chunk.done) break;
    buffered += Buffer.from(chunk.value).toString('utf8');
  }
  abort.abort();
  const line = /^data: (.*)$/m.exec(buffered)?.[1];
  assert.ok(line !== undefined, `no data line in ${JSON.stringify(buffered)}`);
  const streamed = JSON.parse(line);
  assert.equal(streamed.status, 'rejected');
  assert.deepEqual(validate(doc, { $ref: '#/components/schemas/Event' }, streamed), []);
  const rejected = await eventually(async () => {
    const page = await call('GET', `/api/events?channel=docs-rejected&status=rejected`);
    return page.body.events[0];
  });
  assert.equal(rejected.reason, 'missing_signature');
  assert.equal((await call('GET', `/api/events/${rejected.id}`)).body.status, 'rejected');
  expectError(await call('POST', `/api/events/${rejected.id}/replay`), 409, 'ERR_CONFLICT');
});
