/**
 * Backpressure at both ends: a route's `concurrency` caps the requests in flight to its app,
 * and a channel's `rateLimit` refuses webhooks beyond it with 429 + Retry-After, storing
 * nothing for them.
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
  tempDir,
  type AgentHandle,
  type RelayHandle,
  type Route,
} from '../helpers/processes.ts';
import { acknowledged, burst, burstDispatcher } from '../fault/helpers.ts';
import {
  answerLater,
  countById,
  InFlight,
  listChannel,
  need,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  post,
  sleep,
  waitDelivered,
  type Answer,
} from './support.ts';
import { test } from '../helpers/store.ts';

const CONCURRENCY = 3;
const N = 60;
const RATE = { perSecond: 5, burst: 5 };
const AT_ONCE = 20;

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
let app: TestApp | undefined;
let slowId = '';
let limitedId = '';
const inFlight = new InFlight();
const http = burstDispatcher(AT_ONCE);

interface LimitedRoute extends Route {
  name: string;
  concurrency: number;
}

before(
  async () => {
    // Holds each request 50 ms and counts how many are in flight at once.
    app = await startApp((_req, res) => {
      inFlight.enter();
      answerLater(res, 200, 50, () => inFlight.leave());
    });
    dataDir = await tempDir();
    const r = await startRelay({ dataDir });
    relay = r;
    slowId = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'slow' })).id;
    const limited = await r.api<{ id: string; rateLimit: unknown }>('POST', '/api/channels', {
      name: 'limited',
      rateLimit: RATE,
    });
    assert.deepEqual(limited.rateLimit, RATE);
    limitedId = limited.id;
    ({ stateDir } = await pairAgent(r, [slowId]));
    const routes: LimitedRoute[] = [
      { name: 'slow', channel: 'slow', target: `${app.url}/slow`, concurrency: CONCURRENCY },
    ];
    agent = await startAgent(stateDir, routes);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

test(
  `route concurrency ${CONCURRENCY}: ${N} events, never more than ${CONCURRENCY} in flight at the app`,
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = need(app, 'app');
    const sent = await burst({
      url: `${r.url}/h/${slowId}/x`,
      count: N,
      inFlight: 20,
      dispatcher: http,
      deadlineMs: 30_000,
      label: 'concurrency',
    });
    const acked = acknowledged(sent);
    assert.equal(acked.size, N, `${acked.size} of ${N} accepted`);
    await waitDelivered(r, slowId, acked.keys(), 60_000);
    const byId = countById(a.received);
    console.log(
      `concurrency: ${N} sent, ${acked.size} accepted, ${byId.size} delivered, ` +
        `${a.received.length} requests, max in flight ${inFlight.max} (limit ${CONCURRENCY})`,
    );
    assert.equal(byId.size, N, `${byId.size} of ${N} delivered`);
    assert.equal(a.received.length, N, 'each event once');
    assert.deepEqual(
      [...acked.keys()].filter((id) => byId.get(id) !== 1),
      [],
      'every accepted event reached the app exactly once',
    );
    assert.equal(inFlight.max, CONCURRENCY, `max ${inFlight.max} in flight, limit ${CONCURRENCY}`);
    assert.equal(inFlight.now, 0);
  },
);

test(
  `channel rate limit ${RATE.perSecond}/s, burst ${RATE.burst}: ${AT_ONCE} at once → ${RATE.burst} accepted, the rest 429`,
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    // Open every connection first (a 404 costs no token), so that the burst arrives at once.
    await Promise.all(
      Array.from({ length: AT_ONCE }, async () => {
        const res = await request(`${r.url}/h/ch_doesnotexist`, { dispatcher: http });
        await res.body.text();
        assert.equal(res.statusCode, 404);
      }),
    );
    const answers: Answer[] = await Promise.all(
      Array.from({ length: AT_ONCE }, (_, i) =>
        post(r, limitedId, JSON.stringify({ i }), { dispatcher: http }),
      ),
    );
    const accepted = answers.filter((x) => x.status === 202);
    const refused = answers.filter((x) => x.status === 429);
    console.log(
      `rate limit: ${AT_ONCE} at once → ${accepted.length} accepted (202), ${refused.length} ` +
        `refused (429), Retry-After ${[...new Set(refused.map((x) => x.retryAfter))].join(', ')}`,
    );
    assert.equal(accepted.length, RATE.burst, `${accepted.length} accepted`);
    assert.equal(refused.length, AT_ONCE - RATE.burst, `${refused.length} refused`);
    for (const x of refused) {
      const seconds = Number(x.retryAfter);
      assert.ok(
        Number.isInteger(seconds) && seconds >= 1,
        `Retry-After is a whole number of seconds ≥ 1: ${x.retryAfter}`,
      );
      assert.match(x.text, /ERR_RATE_LIMITED/);
    }
    const ids = accepted.map((x) => need(x.id ?? undefined, 'event id'));
    const stored = await listChannel(r, limitedId);
    assert.deepEqual(
      stored.map((e) => e.id).sort(),
      [...ids].sort(),
      'only the accepted ones are stored',
    );

    // Time must pass for the bucket to refill: a second later, a full burst is accepted again.
    await sleep(1_100);
    const again = await Promise.all(
      Array.from({ length: RATE.burst }, (_, i) =>
        post(r, limitedId, JSON.stringify({ again: i }), { dispatcher: http }),
      ),
    );
    console.log(
      `rate limit: after 1.1 s, ${again.filter((x) => x.status === 202).length} of ` +
        `${RATE.burst} accepted`,
    );
    assert.deepEqual(
      again.map((x) => x.status),
      Array.from({ length: RATE.burst }, () => 202),
    );
    assert.equal((await listChannel(r, limitedId)).length, 2 * RATE.burst);
  },
);
