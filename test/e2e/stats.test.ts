/**
 * `GET /api/stats`: what the store counted as events went through a real relay and agent,
 * received, delivered, failed and latency, for the last hour and day and a given range; and
 * what it refuses.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import { checkAnswer, loadOpenApi } from '../helpers/openapi.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

interface Sums {
  received: number;
  delivered: number;
  failed: number;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null };
}
interface Series {
  since: string;
  until: string;
  stepSeconds: number;
  points: (Sums & { at: string })[];
  totals: Sums;
}

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
let agent: AgentHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
const sent: string[] = [];
let startedAt = 0;

before(async () => {
  startedAt = Date.now();
  app = await startApp((req, res) => {
    res.statusCode = req.url.includes('/fail') ? 500 : 200;
    res.end();
  });
  dataDir = await tempDir();
  relay = await startRelay({ dataDir });
  // No retry: a failure is final at once.
  const ch = await relay.api<{ id: string }>('POST', '/api/channels', {
    name: 'charts',
    retry: { delaysMs: [] },
  });
  const paired = await pairAgent(relay, [ch.id], 'charts-agent');
  stateDir = paired.stateDir;
  agent = await startAgent(stateDir, [{ channel: 'charts', target: `${app.url}/hooks` }]);
  for (const path of ['a', 'b', 'c', 'fail']) {
    const res = await fetch(`${relay.url}/h/${ch.id}/${path}`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 202);
    sent.push(((await res.json()) as { id: string }).id);
  }
  for (const [i, id] of sent.entries()) {
    await waitForEventStatus(relay, id, i === 3 ? 'failed' : 'delivered');
  }
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

test('the last hour: 60 one-minute points, with what went through', async () => {
  const r = need(relay, 'relay');
  const hour = await r.api<Series>('GET', '/api/stats');
  assert.equal(hour.stepSeconds, 60);
  assert.equal(hour.points.length, 60);
  assert.equal(Date.parse(hour.until) - Date.parse(hour.since), 3_600_000);
  assert.ok(Date.parse(hour.until) > Date.now() - 60_000, 'ends with the current minute');
  assert.equal(hour.totals.received, 4);
  assert.equal(hour.totals.delivered, 3);
  assert.equal(hour.totals.failed, 1);
  const { p50, p90, p99 } = hour.totals.latencyMs;
  assert.ok(p50 !== null && p90 !== null && p99 !== null, 'percentiles of three deliveries');
  assert.ok(p50 <= p90 && p90 <= p99);
  // The points add up to the totals, each in its own minute.
  const sum = (k: 'received' | 'delivered' | 'failed') => hour.points.reduce((n, p) => n + p[k], 0);
  assert.deepEqual([sum('received'), sum('delivered'), sum('failed')], [4, 3, 1]);
  for (const [i, p] of hour.points.entries()) {
    assert.equal(Date.parse(p.at), Date.parse(hour.since) + i * 60_000);
    if (p.delivered === 0) assert.equal(p.latencyMs.p50, null);
  }
  assert.deepEqual(await r.api<Series>('GET', '/api/stats?range=hour'), hour);
});

test('the last day: 96 quarter-hour points; a given range, in ms or ISO 8601', async () => {
  const r = need(relay, 'relay');
  const day = await r.api<Series>('GET', '/api/stats?range=day');
  assert.equal(day.stepSeconds, 900);
  assert.equal(day.points.length, 96);
  assert.equal(day.totals.received, 4);
  assert.equal(day.totals.delivered, 3);

  // Ten minutes around the test, by ms: one-minute steps, aligned.
  const since = startedAt - 5 * 60_000;
  const until = Date.now() + 5 * 60_000;
  const range = await r.api<Series>('GET', `/api/stats?since=${since}&until=${until}`);
  assert.equal(range.stepSeconds, 60);
  assert.equal(Date.parse(range.since), Math.floor(since / 60_000) * 60_000);
  assert.equal(range.totals.received, 4);
  assert.equal(range.totals.failed, 1);
  // A week by ISO 8601: an hour per point (five-minute ones would be too many).
  const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString();
  const week = await r.api<Series>('GET', `/api/stats?since=${encodeURIComponent(weekAgo)}`);
  assert.equal(week.stepSeconds, 3_600);
  assert.equal(week.totals.received, 4);
  // Before anything happened: nothing.
  const empty = await r.api<Series>('GET', `/api/stats?since=${since - 3_600_000}&until=${since}`);
  assert.equal(empty.totals.received, 0);
  assert.equal(empty.totals.latencyMs.p99, null);
});

test('bad ranges are refused with 400', async () => {
  const r = need(relay, 'relay');
  const doc = loadOpenApi();
  for (const query of [
    'range=week',
    'range=hour&since=0',
    'until=1700000000000',
    'since=yesterday',
    'since=1700000000000&until=1600000000000',
    'since=0',
  ]) {
    const res = await fetch(`${r.url}/api/stats?${query}`, {
      headers: { authorization: `Bearer ${r.token}` },
    });
    assert.equal(res.status, 400, query);
    const text = await res.text();
    checkAnswer(doc, 'GET', `/api/stats?${query}`, res.status, text);
    const body = JSON.parse(text) as { error: { code: string } };
    assert.equal(body.error.code, 'ERR_BAD_REQUEST', query);
  }
  const res = await fetch(`${r.url}/api/stats`);
  assert.equal(res.status, 401, 'the admin token is needed');
});
