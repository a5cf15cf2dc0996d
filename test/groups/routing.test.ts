/**
 * Routing rules on a real agent: routes chosen by header and JSON field, fan-out to every
 * matching route, `filtered` for an event no route takes (never retried), a retry that goes
 * only to the route that failed, and a granted channel without any route keeping its events
 * queued.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
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
import { burstDispatcher } from '../fault/helpers.ts';
import {
  countById,
  getEvent,
  need,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  postAccepted,
  sleep,
  waitDelivered,
  waitEvents,
  type EventView,
} from './support.ts';
import { test } from '../helpers/store.ts';

const RETRY_MS = 200;
const EACH = 5;

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
let appA: TestApp | undefined;
let appB: TestApp | undefined;
let appC: TestApp | undefined;
let ghId = '';
let unroutedId = '';
const http = burstDispatcher(4);

interface RuleRoute extends Route {
  name: string;
  match?: { headers?: Record<string, string | string[]>; json?: Record<string, string> };
}

before(
  async () => {
    appA = await startApp();
    appB = await startApp();
    appC = await startApp();
    dataDir = await tempDir();
    const r = await startRelay({ dataDir });
    relay = r;
    const retry = { delaysMs: [RETRY_MS, RETRY_MS, RETRY_MS, RETRY_MS, RETRY_MS] };
    ghId = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'gh', retry })).id;
    unroutedId = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'unrouted', retry }))
      .id;
    ({ stateDir } = await pairAgent(r, [ghId, unroutedId]));
    const routes: RuleRoute[] = [
      {
        name: 'push',
        channel: 'gh',
        target: `${appA.url}/a`,
        match: { headers: { 'X-GitHub-Event': 'push' } },
      },
      {
        name: 'all-deploys',
        channel: 'gh',
        target: `${appB.url}/b`,
        match: { json: { 'repository.full_name': 'acme/api' } },
      },
      {
        name: 'releases',
        channel: 'gh',
        target: `${appC.url}/c`,
        match: { headers: { 'x-github-event': ['release', 'create'] } },
      },
      // No route names "unrouted".
    ];
    agent = await startAgent(stateDir, routes);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  await agent?.stop();
  await relay?.stop();
  for (const a of [appA, appB, appC]) await a?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function github(r: RelayHandle, event: string, repo: string, n: number): Promise<string> {
  return postAccepted(
    r,
    ghId,
    JSON.stringify({ action: event, n, repository: { full_name: repo } }),
    { headers: { 'x-github-event': event }, dispatcher: http },
  );
}

function sameSet(actual: Iterable<string>, expected: Iterable<string>, what: string): void {
  assert.deepEqual([...actual].sort(), [...expected].sort(), what);
}

test(
  'routes by header and JSON field: fan-out, single routes, and filtered events',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [a, b, c] = [need(appA, 'A'), need(appB, 'B'), need(appC, 'C')];
    const kinds: Record<string, [string, string]> = {
      pushAcme: ['push', 'acme/api'],
      pushOther: ['push', 'other/repo'],
      issuesAcme: ['issues', 'acme/api'],
      pingOther: ['ping', 'other/repo'],
    };
    const ids: Record<string, string[]> = {};
    for (let n = 0; n < EACH; n++) {
      for (const [kind, [event, repo]] of Object.entries(kinds)) {
        (ids[kind] ??= []).push(await github(r, event, repo, n));
      }
    }
    const pushAcme = need(ids['pushAcme'], 'push acme');
    const pushOther = need(ids['pushOther'], 'push other');
    const issuesAcme = need(ids['issuesAcme'], 'issues acme');
    const pingOther = need(ids['pingOther'], 'ping other');

    const delivered = await waitDelivered(r, ghId, [...pushAcme, ...pushOther, ...issuesAcme]);
    const filtered = await waitEvents(
      r,
      ghId,
      pingOther,
      (e) => e.status === 'filtered',
      'filtered',
      30_000,
    );
    const atA = countById(a.received);
    const atB = countById(b.received);
    console.log(
      `routing: ${4 * EACH} sent; app A (push) got ${a.received.length}, app B (acme/api) got ` +
        `${b.received.length}, app C (releases) got ${c.received.length}; ` +
        `${delivered.size} delivered, ${filtered.size} filtered`,
    );
    sameSet(atA.keys(), [...pushAcme, ...pushOther], 'app A got every push, and only pushes');
    sameSet(atB.keys(), [...pushAcme, ...issuesAcme], 'app B got every acme/api event, only those');
    assert.equal(a.received.length, 2 * EACH, 'app A: each push once');
    assert.equal(b.received.length, 2 * EACH, 'app B: each acme/api event once');
    assert.equal(c.received.length, 0, 'app C: no release was sent');
    for (const req of a.received) assert.equal(req.url, '/a');
    for (const req of b.received) assert.equal(req.url, '/b');

    const routesOf = (e: EventView | undefined) => [...(e?.deliveredRoutes ?? [])].sort();
    for (const id of pushAcme) {
      assert.deepEqual(routesOf(delivered.get(id)), ['all-deploys', 'push'], `fan-out ${id}`);
    }
    for (const id of pushOther) assert.deepEqual(routesOf(delivered.get(id)), ['push']);
    for (const id of issuesAcme) assert.deepEqual(routesOf(delivered.get(id)), ['all-deploys']);
    for (const e of delivered.values()) assert.equal(e.attemptCount, 1, `${e.id}: one attempt`);

    for (const e of filtered.values()) {
      assert.equal(e.attemptCount, 0, `${e.id}: filtered uses no attempt`);
      assert.deepEqual(
        e.attempts.map((x) => x.outcome),
        ['filtered'],
      );
      assert.equal(e.deliveredRoutes, undefined, 'no route got a filtered event');
    }
    // Several retry delays later: nothing more arrived anywhere, and the pings stay filtered.
    await sleep(5 * RETRY_MS);
    assert.equal(a.received.length, 2 * EACH, 'no further request at A');
    assert.equal(b.received.length, 2 * EACH, 'no further request at B');
    assert.equal(c.received.length, 0, 'no further request at C');
    for (const id of pingOther) {
      const e = await getEvent(r, id);
      assert.equal(e.status, 'filtered', `${id} stays filtered`);
      assert.equal(e.attempts.length, 1, `${id} was not offered again`);
      assert.equal(e.nextAttemptAt, null);
    }
    const pingSeen = [...atA.keys(), ...atB.keys()].filter((id) => pingOther.includes(id));
    assert.deepEqual(pingSeen, [], 'no app ever saw a ping');
  },
);

test(
  'fan-out with one failing route: the retry goes only to the route that failed',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [a, b] = [need(appA, 'A'), need(appB, 'B')];
    const fromA = a.received.length;
    const fromB = b.received.length;
    const seenByB = new Map<string, number>();
    b.respond = (req, res) => {
      const id = String(req.headers['x-postern-event-id']);
      const n = (seenByB.get(id) ?? 0) + 1;
      seenByB.set(id, n);
      res.statusCode = n <= 2 ? 500 : 200;
      res.end(n <= 2 ? 'not yet' : 'ok');
    };
    const id = await github(r, 'push', 'acme/api', 99);
    const e = await waitEvents(r, ghId, [id], (x) => x.status === 'delivered', 'delivered');
    const event = need(e.get(id), 'event');
    const gotA = a.received.slice(fromA);
    const gotB = b.received.slice(fromB);
    console.log(
      `fan-out retry: app A got ${gotA.length} request(s), app B ${gotB.length}; attempts ` +
        `${event.attempts.map((x) => x.outcome).join(', ')}; deliveredRoutes ` +
        `${(event.deliveredRoutes ?? []).join(', ')}`,
    );
    assert.equal(gotA.length, 1, 'A received the event exactly once');
    assert.equal(gotB.length, 3, 'B received it three times (two 500s, then 200)');
    assert.deepEqual(
      gotB.map((q) => q.headers['x-postern-attempt']),
      ['1', '2', '3'],
    );
    assert.equal(gotA[0]?.headers['x-postern-attempt'], '1');
    for (const q of [...gotA, ...gotB]) assert.equal(q.headers['x-postern-event-id'], id);
    assert.equal(event.status, 'delivered');
    assert.equal(event.attemptCount, 3);
    assert.deepEqual(
      event.attempts.map((x) => x.outcome),
      ['failed', 'failed', 'delivered'],
    );
    assert.deepEqual([...(event.deliveredRoutes ?? [])].sort(), ['all-deploys', 'push']);
    // And nothing more comes after the delivery.
    await sleep(3 * RETRY_MS);
    assert.equal(a.received.length - fromA, 1);
    assert.equal(b.received.length - fromB, 3);
  },
);

test(
  'a granted channel without a route keeps its events queued (no_route), never filtered',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = need(agent, 'agent');
    const [appsA, appsB, appsC] = [need(appA, 'A'), need(appB, 'B'), need(appC, 'C')];
    const total = () => appsA.received.length + appsB.received.length + appsC.received.length;
    const before = total();
    await a.proc.waitFor(
      (l) => typeof l.msg === 'string' && l.msg.includes('"unrouted" has no route'),
    );
    const ids: string[] = [];
    for (let n = 0; n < 3; n++) {
      ids.push(await postAccepted(r, unroutedId, JSON.stringify({ n }), { dispatcher: http }));
    }
    // The agent was offered each one and said it has no route for it.
    const offered = await waitEvents(
      r,
      unroutedId,
      ids,
      (e) => e.attempts.length >= 1,
      'offered to the agent',
      30_000,
    );
    await sleep(5 * RETRY_MS);
    const later = await waitEvents(r, unroutedId, ids, () => true, 'listed', 10_000);
    console.log(
      `no route: ${ids.length} sent; statuses ${[...later.values()].map((e) => e.status).join(', ')}; ` +
        `attempts ${[...offered.values()].map((e) => e.attempts.map((x) => x.outcome).join('+')).join(', ')}`,
    );
    for (const e of later.values()) {
      assert.equal(e.status, 'queued', `${e.id} stays queued`);
      assert.equal(e.attemptCount, 0, `${e.id}: waiting for a route uses no attempt`);
      assert.ok(e.attempts.length >= 1);
      assert.ok(
        e.attempts.every((x) => x.outcome === 'no_route'),
        `${e.id}: ${e.attempts.map((x) => x.outcome).join(', ')}`,
      );
    }
    assert.equal(total(), before, 'no app got any of them');
  },
);

test(
  'replaying a delivered fan-out event delivers it to every route again',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [a, b] = [need(appA, 'A'), need(appB, 'B')];
    b.respond = (_req, res) => void res.end('ok');
    const id = await github(r, 'push', 'acme/api', 1_000);
    const first = await waitEvents(r, ghId, [id], (e) => e.status === 'delivered', 'delivered');
    assert.deepEqual([...(first.get(id)?.deliveredRoutes ?? [])].sort(), ['all-deploys', 'push']);
    const count = () => [countById(a.received).get(id) ?? 0, countById(b.received).get(id) ?? 0];
    assert.deepEqual(count(), [1, 1], 'delivered once to A and once to B');

    const replayed = await r.api<{ status: string; attemptCount: number }>(
      'POST',
      `/api/events/${id}/replay`,
    );
    // Queued again with a fresh budget (and maybe already on its way to the agent).
    assert.ok(['queued', 'delivering'].includes(replayed.status), replayed.status);
    assert.equal(replayed.attemptCount, 0);
    const again = await waitEvents(
      r,
      ghId,
      [id],
      (e) => e.status === 'delivered' && e.attempts.length === 2,
      'delivered again',
      30_000,
    );
    // A little time, so that a third request on its way would be seen.
    await sleep(3 * RETRY_MS);
    const e = need(again.get(id), 'event');
    console.log(
      `replay of a delivered fan-out event: attempts ${e.attempts.map((x) => x.outcome).join(', ')}; ` +
        `requests A ${count()[0]}, B ${count()[1]}`,
    );
    assert.deepEqual(count(), [2, 2], 'the replay reached A and B once more each');
    assert.deepEqual([...(e.deliveredRoutes ?? [])].sort(), ['all-deploys', 'push']);
    assert.deepEqual(
      e.attempts.map((x) => x.outcome),
      ['delivered', 'delivered'],
    );
  },
);
