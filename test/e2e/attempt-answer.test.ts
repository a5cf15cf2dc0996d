/**
 * The app's answer kept with each attempt: a failing app's status, headers (cookies redacted)
 * and the first 2048 bytes of its body reach the admin API through agent, tunnel and store;
 * a replay's attempts say which replay they belong to; a route can keep its answers in.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { request } from 'undici';
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
let app: TestApp;
let agent: AgentHandle;

/** 3000 bytes of JSON: more than the 2048 an attempt keeps. */
const ANSWER = Buffer.from(JSON.stringify({ error: 'database down', detail: 'x'.repeat(2955) }));

interface AttemptView {
  outcome: string;
  status: number | null;
  error: string | null;
  replay?: number;
  response?: { headers: [string, string][]; body: string; bodyBytes: number; truncated: boolean };
}

before(async () => {
  app = await startApp((req, res) => {
    res.statusCode = 500;
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('X-Trace-Id', `trace-${req.url}`);
    res.setHeader('Set-Cookie', 'sid=top-secret-session; HttpOnly');
    res.end(ANSWER);
  });
  relay = await startRelay();
  for (const name of ['answers', 'quiet']) {
    await relay.api('POST', '/api/channels', { name, retry: { delaysMs: [50] } });
  }
  const { stateDir } = await pairAgent(relay, ['answers', 'quiet']);
  agent = await startAgent(stateDir, [
    { channel: 'answers', target: `${app.url}/loud` },
    { channel: 'quiet', target: `${app.url}/quiet`, recordAnswer: false },
  ]);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(agent.stateDir);
});

async function send(channel: string, body: string): Promise<string> {
  const { id: channelId } = await relay.api('GET', `/api/channels/${channel}`);
  const res = await request(`${relay.url}/h/${channelId}`, { method: 'POST', body });
  assert.equal(res.statusCode, 202);
  return ((await res.body.json()) as { id: string }).id;
}

test("each failed attempt keeps the app's status, headers and first 2048 bytes; a replay is marked", async () => {
  const id = await send('answers', '{"n":1}');
  const failed = await waitForEventStatus(relay, id, 'failed');
  const attempts = failed.attempts as AttemptView[];
  assert.equal(attempts.length, 2, 'the first attempt and its one retry');
  for (const a of attempts) {
    assert.equal(a.outcome, 'failed');
    assert.equal(a.status, 500);
    assert.equal(a.error, 'app answered 500');
    assert.equal('replay' in a, false, 'the original delivery carries no replay mark');
    const response = a.response;
    assert.ok(response, 'the attempt keeps the answer');
    const header = (name: string) => response.headers.filter(([n]) => n === name).map(([, v]) => v);
    assert.deepEqual(header('x-trace-id'), ['trace-/loud']);
    assert.deepEqual(header('content-type'), ['application/json']);
    assert.deepEqual(header('set-cookie'), ['[redacted]']);
    assert.deepEqual(Buffer.from(response.body, 'base64'), ANSWER.subarray(0, 2048));
    assert.equal(response.bodyBytes, ANSWER.length);
    assert.equal(response.truncated, true);
  }
  // The list shows the same attempts; no cookie value anywhere.
  const { events } = await relay.api('GET', '/api/events?channel=answers');
  const listed = (events as { id: string; attempts: AttemptView[] }[]).find((e) => e.id === id);
  assert.deepEqual(listed?.attempts, attempts);
  assert.equal(JSON.stringify(events).includes('top-secret-session'), false);

  app.respond = (_req, res) => {
    res.setHeader('X-Fixed', 'yes');
    res.end('fine');
  };
  await relay.api('POST', `/api/events/${id}/replay`);
  const delivered = await waitForEventStatus(relay, id, 'delivered');
  const all = delivered.attempts as AttemptView[];
  assert.equal(all.length, 3);
  assert.deepEqual(all.slice(0, 2), attempts, 'the earlier attempts are unchanged');
  const last = all[2]!;
  assert.equal(last.outcome, 'delivered');
  assert.equal(last.status, 200);
  assert.equal(last.replay, 1);
  assert.equal(Buffer.from(last.response!.body, 'base64').toString(), 'fine');
  assert.equal(last.response?.bodyBytes, 4);
  assert.equal(last.response?.truncated, false);
  assert.deepEqual(
    last.response?.headers.filter(([n]) => n === 'x-fixed'),
    [['x-fixed', 'yes']],
  );
});

test('a route with recordAnswer: false sends the status only', async () => {
  app.respond = (_req, res) => {
    res.statusCode = 500;
    res.setHeader('X-Private', 'internal detail');
    res.end('private body');
  };
  const id = await send('quiet', 'q');
  const failed = await waitForEventStatus(relay, id, 'failed');
  const attempts = failed.attempts as AttemptView[];
  assert.equal(attempts.length, 2);
  for (const a of attempts) {
    assert.equal(a.status, 500);
    assert.equal('response' in a, false);
  }
  assert.equal(JSON.stringify(failed).includes('internal detail'), false);
});
