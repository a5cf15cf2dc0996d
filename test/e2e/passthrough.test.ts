/**
 * Byte-exact passthrough: for every method, binary bodies (invalid UTF-8, CRLF, NUL), path
 * suffix, query and header values reach the app unchanged, plus the x-postern-* headers.
 */
import assert from 'node:assert/strict';
import { request } from 'undici';
import { after, before } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle;
let agent: AgentHandle;
let app: TestApp;
let channelId: string;

before(async () => {
  app = await startApp();
  relay = await startRelay();
  const channel = await relay.api('POST', '/api/channels', { name: 'passthrough' });
  channelId = channel.id;
  const { stateDir } = await pairAgent(relay, [channelId]);
  agent = await startAgent(stateDir, [{ channel: 'passthrough', target: `${app.url}/base` }]);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(agent.stateDir);
});

/** Sends a raw request so that header case, duplicates and body bytes are exactly ours. */
async function send(
  method: string,
  path: string,
  headers: [string, string][],
  body: Buffer,
): Promise<{ status: number; body: string }> {
  const res = await request(`${relay.url}${path}`, {
    method,
    headers: headers.flat(),
    body: body.length > 0 ? body : null,
  });
  return { status: res.statusCode, body: await res.body.text() };
}

const BINARY = Buffer.concat([
  Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]),
  Buffer.from('\r\nline two\r\n\r\n'),
  Buffer.from([0xe2, 0x82]),
]);

for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'GET', 'OPTIONS']) {
  test(`${method}: body bytes, path suffix, query and headers arrive unchanged`, async () => {
    const body = method === 'GET' ? Buffer.alloc(0) : BINARY;
    const path = `/h/${channelId}/a/b%20c/d.json?x=1&x=2&empty=&enc=%2F%3F#`.replace('#', '');
    const headers: [string, string][] = [
      ['Content-Type', 'application/octet-stream'],
      ['X-Custom-Case', 'Value  with  spaces'],
      ['X-Dup', 'one'],
      ['X-Dup', 'two'],
      ['X-Hub-Signature-256', 'sha256=abc'],
    ];
    if (body.length > 0) headers.push(['Content-Length', String(body.length)]);
    const before = app.received.length;
    const res = await send(method, path, headers, body);
    assert.equal(res.status, 202, `${res.status} ${res.body}`);
    const { id } = JSON.parse(res.body) as { id: string };
    assert.match(id, /^evt_[0-9a-z]{26}$/);
    await app.waitFor(before + 1);
    const got = app.received.find((r) => r.headers['x-postern-event-id'] === id);
    assert.ok(got, 'the app received the event');
    assert.equal(got.method, method);
    assert.equal(got.url, `/base/a/b%20c/d.json?x=1&x=2&empty=&enc=%2F%3F`);
    assert.deepEqual(got.body, body);
    const pairs: [string, string][] = [];
    for (let i = 0; i < got.rawHeaders.length; i += 2)
      pairs.push([got.rawHeaders[i]!, got.rawHeaders[i + 1]!]);
    for (const h of headers.filter(([n]) => n !== 'Content-Length')) {
      assert.ok(
        pairs.some(([n, v]) => n === h[0] && v === h[1]),
        `header ${h[0]}: ${h[1]} kept exactly`,
      );
    }
    assert.deepEqual(
      pairs.filter(([n]) => n === 'X-Dup').map(([, v]) => v),
      ['one', 'two'],
    );
    assert.equal(got.headers['x-postern-attempt'], '1');
    assert.equal(got.headers['x-postern-channel'], 'passthrough');
    assert.equal(
      got.headers['x-postern-original-url'],
      `${relay.url.replace('127.0.0.1', 'localhost')}${path}`,
    );
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(got.headers['x-forwarded-proto'], 'http');
    assert.equal(got.headers.host, new URL(app.url).host);
    const stored = await waitForEventStatus(relay, id, 'delivered');
    assert.equal(stored.attemptCount, 1);
    assert.deepEqual(Buffer.from(stored.body, 'base64'), body);
  });
}

test('a request to an unknown channel is 404 and stores nothing', async () => {
  const before = (await relay.api('GET', '/api/events?limit=500')).events.length;
  const res = await send('POST', '/h/ch_doesnotexist0000000000000000/x', [], Buffer.from('x'));
  assert.equal(res.status, 404);
  const afterCount = (await relay.api('GET', '/api/events?limit=500')).events.length;
  assert.equal(afterCount, before);
});
