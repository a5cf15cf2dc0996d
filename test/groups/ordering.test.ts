/**
 * Ordered channels: one event in flight per ordering key, the successful deliveries of a key in
 * arrival order even when the app fails at random (seeded), keys independent of each other, a
 * failing head holding only its own key, and the operator's skip letting the rest through.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
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
import { burstDispatcher } from '../fault/helpers.ts';
import {
  answerLater,
  bodyOf,
  countById,
  eventIdOf,
  getEvent,
  InFlight,
  need,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  plannedFailure,
  postAccepted,
  sleep,
  waitDelivered,
  waitEvents,
} from './support.ts';
import { test } from '../helpers/store.ts';

const SEED = 20_250_117;
const FAIL_RATE = 0.3;
/** Fewer failures in a row than the channel has retries: no event gives up. */
const MAX_FAILURES = 4;
const SHORT_RETRIES = { delaysMs: [50, 50, 50, 50, 50, 50, 50, 50] };

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
const apps: TestApp[] = [];
const channelIds = new Map<string, string>();
const http = burstDispatcher(8);

interface NamedRoute extends Route {
  name: string;
}

/** An app whose answers the test sets; made before the agent, so its URL is in the config. */
async function app(): Promise<TestApp> {
  const a = await startApp();
  apps.push(a);
  return a;
}

let seqApp: TestApp | undefined;
let keysApp: TestApp | undefined;
let holApp: TestApp | undefined;

before(
  async () => {
    seqApp = await app();
    keysApp = await app();
    holApp = await app();
    dataDir = await tempDir();
    const r = await startRelay({ dataDir });
    relay = r;
    const channels: [string, Record<string, unknown>][] = [
      ['seq', { ordered: true, retry: SHORT_RETRIES }],
      ['keys', { ordered: true, orderingKey: { jsonField: 'repo' }, retry: SHORT_RETRIES }],
      // Long enough that a failed head is queued (skippable) for the whole test.
      [
        'hol',
        { ordered: true, orderingKey: { jsonField: 'repo' }, retry: { delaysMs: [600_000] } },
      ],
    ];
    for (const [name, options] of channels) {
      const c = await r.api<{ id: string; ordered: boolean }>('POST', '/api/channels', {
        name,
        ...options,
      });
      assert.equal(c.ordered, true);
      channelIds.set(name, c.id);
    }
    ({ stateDir } = await pairAgent(r, [...channelIds.values()]));
    const routes: NamedRoute[] = [
      { name: 'seq', channel: 'seq', target: `${seqApp.url}/seq` },
      { name: 'keys', channel: 'keys', target: `${keysApp.url}/keys` },
      { name: 'hol', channel: 'hol', target: `${holApp.url}/hol` },
    ];
    agent = await startAgent(stateDir, routes);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  await agent?.stop();
  await relay?.stop();
  for (const a of apps) await a.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function channel(name: string): string {
  return need(channelIds.get(name), `channel ${name}`);
}

function numberField(req: Received, field: string): number {
  const v = bodyOf(req)[field];
  assert.equal(typeof v, 'number', `request body has a numeric ${field}`);
  return Number(v);
}

function stringField(req: Received, field: string): string {
  const v = bodyOf(req)[field];
  assert.equal(typeof v, 'string', `request body has a string ${field}`);
  return String(v);
}

test(
  'one ordered lane, an app failing ~30 % at random: successes are exactly 1..200, one at a time',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = need(seqApp, 'app');
    const N = 200;
    const inFlight = new InFlight();
    const attemptsOf = new Map<number, number>();
    const statuses: { seq: number; status: number }[] = [];
    a.respond = (req, res) => {
      const seq = numberField(req, 'seq');
      const attempt = (attemptsOf.get(seq) ?? 0) + 1;
      attemptsOf.set(seq, attempt);
      const status = plannedFailure(SEED, `seq/${seq}`, attempt, FAIL_RATE, MAX_FAILURES)
        ? 500
        : 200;
      statuses.push({ seq, status });
      inFlight.enter();
      // A short hold, so that a second request in flight would overlap and be seen.
      answerLater(res, status, 2, () => inFlight.leave());
    };

    // One by one: the relay has accepted event n before event n+1 is sent (arrival order).
    const ids: string[] = [];
    for (let seq = 1; seq <= N; seq++) {
      ids.push(
        await postAccepted(r, channel('seq'), JSON.stringify({ seq }), { dispatcher: http }),
      );
    }
    const events = await waitDelivered(r, channel('seq'), ids, 90_000);

    const successes = statuses.filter((s) => s.status < 300).map((s) => s.seq);
    const failures = statuses.length - successes.length;
    // The request sequence never goes back: every retry of n comes before the first try of n+1.
    const backwards = statuses.filter((s, i) => i > 0 && s.seq < statuses[i - 1]!.seq).length;
    console.log(
      `ordered lane: ${N} sent, ${statuses.length} requests, ${failures} answered 500 ` +
        `(${((100 * failures) / statuses.length).toFixed(1)} %), ${successes.length} successes, ` +
        `max in flight ${inFlight.max}, ${backwards} steps backwards`,
    );
    assert.deepEqual(
      successes,
      Array.from({ length: N }, (_, i) => i + 1),
      'successes in arrival order',
    );
    assert.equal(inFlight.max, 1, `max ${inFlight.max} requests in flight at once`);
    assert.equal(backwards, 0, 'no request for an earlier event after a later one');
    assert.ok(failures > 0, `${failures} failures: the app did fail`);
    // The relay counts the same attempts as the app saw, event by event.
    const byId = countById(a.received);
    ids.forEach((id, i) => {
      const e = events.get(id)!;
      assert.equal(e.attemptCount, attemptsOf.get(i + 1), `attempts of seq ${i + 1}`);
      assert.equal(byId.get(id), attemptsOf.get(i + 1), `requests for seq ${i + 1}`);
    });
    assert.equal(a.received.length, statuses.length);
  },
);

test(
  'ordering key from a JSON field: 4 keys x 50, exact order per key, keys in parallel',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = need(keysApp, 'app');
    const KEYS = ['acme/api', 'acme/web', 'acme/cli', 'acme/docs'];
    const PER_KEY = 50;
    const inFlight = new InFlight();
    const attemptsOf = new Map<string, number>();
    const successes = new Map<string, number[]>(KEYS.map((k) => [k, []]));
    let requests = 0;
    let failures = 0;
    a.respond = (req, res) => {
      const repo = stringField(req, 'repo');
      const seq = numberField(req, 'seq');
      const label = `${repo}/${seq}`;
      const attempt = (attemptsOf.get(label) ?? 0) + 1;
      attemptsOf.set(label, attempt);
      const fail = plannedFailure(SEED, `keys/${label}`, attempt, FAIL_RATE, MAX_FAILURES);
      requests++;
      if (fail) failures++;
      inFlight.enter(repo);
      // ~20 ms per request: requests of different keys overlap if keys run in parallel.
      answerLater(res, fail ? 500 : 200, 20, () => {
        inFlight.leave(repo);
        if (!fail) successes.get(repo)?.push(seq);
      });
    };

    // Interleaved: one sender per key, each waiting for the 202 before its next event.
    const ids = new Map<string, string[]>(KEYS.map((k) => [k, []]));
    await Promise.all(
      KEYS.map(async (repo) => {
        for (let seq = 0; seq < PER_KEY; seq++) {
          const id = await postAccepted(r, channel('keys'), JSON.stringify({ repo, seq }), {
            dispatcher: http,
          });
          ids.get(repo)!.push(id);
        }
      }),
    );
    const all = [...ids.values()].flat();
    assert.equal(all.length, KEYS.length * PER_KEY);
    await waitDelivered(r, channel('keys'), all, 90_000);

    const perKeyMax = KEYS.map((k) => inFlight.maxPerKey.get(k) ?? 0);
    console.log(
      `ordering keys: ${all.length} sent (${KEYS.length} keys x ${PER_KEY}), ${requests} ` +
        `requests, ${failures} answered 500, max in flight ${inFlight.max} overall, ` +
        `per key ${perKeyMax.join('/')}`,
    );
    for (const key of KEYS) {
      assert.deepEqual(
        successes.get(key),
        Array.from({ length: PER_KEY }, (_, i) => i),
        `${key}: successes in arrival order`,
      );
    }
    assert.deepEqual(perKeyMax, [1, 1, 1, 1], 'never two requests of one key in flight');
    assert.ok(inFlight.max >= 2, `different keys in flight together (max ${inFlight.max})`);
    assert.ok(inFlight.max <= KEYS.length, `at most one per key (max ${inFlight.max})`);
    assert.ok(failures > 0, `${failures} failures: the app did fail`);
    assert.equal(requests, a.received.length);
    // The event view shows the key it was filed under.
    const sample = await getEvent(r, ids.get('acme/web')![7]!);
    assert.equal(sample.orderKey, 'acme/web');
  },
);

test(
  'a failing head holds only its key; skipping it lets the rest through in order',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = need(holApp, 'app');
    const POISON = 'a/1';
    a.respond = (req, res) => {
      const label = `${stringField(req, 'repo')}/${numberField(req, 'seq')}`;
      res.statusCode = label === POISON ? 500 : 200;
      res.end(label === POISON ? 'cannot' : 'ok');
    };
    const labelsAt = (from = 0) =>
      a.received.slice(from).map((req) => `${stringField(req, 'repo')}/${numberField(req, 'seq')}`);

    // a/0, b/0, a/1 (always fails), b/1, a/2, b/2, a/3, b/3, a/4, b/4: sent one by one.
    const idOf = new Map<string, string>();
    for (let seq = 0; seq < 5; seq++) {
      for (const repo of ['a', 'b']) {
        idOf.set(
          `${repo}/${seq}`,
          await postAccepted(r, channel('hol'), JSON.stringify({ repo, seq }), {
            dispatcher: http,
          }),
        );
      }
    }
    const id = (label: string) => need(idOf.get(label), label);
    const behind = ['a/2', 'a/3', 'a/4'];
    const keyB = ['b/0', 'b/1', 'b/2', 'b/3', 'b/4'];

    await waitDelivered(r, channel('hol'), [id('a/0'), ...keyB.map(id)], 30_000);
    const [head] = (
      await waitEvents(
        r,
        channel('hol'),
        [id(POISON)],
        (e) => e.status === 'queued' && e.attemptCount === 1,
        'failed once and queued for a retry',
        30_000,
      )
    ).values();
    assert.ok(head);
    assert.equal(head.attempts[0]?.outcome, 'failed');
    assert.equal(head.attempts[0]?.status, 500);
    assert.equal(head.orderKey, 'a');
    // Let time pass: nothing behind the failing head may move.
    await sleep(1_000);
    const held = labelsAt();
    console.log(`head of line: before the skip the app saw ${held.join(', ')}`);
    assert.deepEqual(
      held.filter((l) => l.startsWith('a/')),
      ['a/0', POISON],
      'key a stops at its failing head',
    );
    assert.deepEqual(
      held.filter((l) => l.startsWith('b/')),
      keyB,
      'key b is not held by key a',
    );
    for (const label of behind) {
      const e = await getEvent(r, id(label));
      assert.equal(e.status, 'queued', `${label} waits behind the head`);
      assert.equal(e.attemptCount, 0, `${label} used no attempt while waiting`);
    }

    // Skipping a delivered event is refused, and changes nothing.
    await assert.rejects(r.api('POST', `/api/events/${id('b/0')}/skip`), / 409 /);
    assert.equal((await getEvent(r, id('b/0'))).status, 'delivered');

    const before = a.received.length;
    const skipped = await r.api<{ status: string; attemptCount: number }>(
      'POST',
      `/api/events/${id(POISON)}/skip`,
    );
    assert.equal(skipped.status, 'failed');
    assert.equal(skipped.attemptCount, 1);
    await waitDelivered(r, channel('hol'), behind.map(id), 30_000);
    const afterSkip = labelsAt(before);
    console.log(`head of line: after the skip the app saw ${afterSkip.join(', ')}`);
    assert.deepEqual(
      afterSkip,
      behind,
      'the rest of key a, in order, and the skipped one not again',
    );
    const poison = await getEvent(r, id(POISON));
    assert.equal(poison.status, 'failed');
    assert.deepEqual(
      poison.attempts.map((x) => x.outcome),
      ['failed', 'skipped'],
    );
    // A skipped event is not queued any more: skipping it again is refused.
    await assert.rejects(r.api('POST', `/api/events/${id(POISON)}/skip`), / 409 /);
    const counts = countById(a.received);
    assert.equal(counts.get(id(POISON)), 1, 'the skipped event reached the app once');
    assert.equal(a.received.length, 10, '10 events, 10 requests: 9 delivered, 1 failed once');
    assert.equal(eventIdOf(a.received[a.received.length - 1]!), id('a/4'));
  },
);
