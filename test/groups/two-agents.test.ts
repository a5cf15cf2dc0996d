/**
 * Agent groups: two agents (two pairings, each with its own state dir) on one channel. Each
 * event goes to one of them; both carry load; nothing is delivered twice while nothing fails.
 * A kill -9 of one agent mid-burst loses nothing: the other takes over what the dead one had
 * not acknowledged. An agent whose app keeps failing is benched: new events go to the other.
 *
 * The agents run the same code, so each routes to its own app: the app tells who delivered.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { startApp, type Responder, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  type Route,
} from '../helpers/processes.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  describeAccounting,
  type Sent,
} from '../fault/helpers.ts';
import {
  countById,
  eventIdOf,
  listChannel,
  need,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  waitDelivered,
  type EventView,
} from './support.ts';
import { test } from '../helpers/store.ts';

const N = 1_000;
const KILL_AFTER = 250;
const BENCH_N = 300;

let relay: RelayHandle | undefined;
let dataDir: string | undefined;
const stateDirs: string[] = [];
/** Every agent process started, stopped in after(). */
const procs: AgentHandle[] = [];
/** Agent 1 and 2, each with its app on the `group` channel and on the `bench` channel. */
const group: TestApp[] = [];
const bench: TestApp[] = [];
const agentIds: string[] = [];
let groupId = '';
let benchId = '';
const http = burstDispatcher(20);

/** Answers 200 after a few ms, so that deliveries overlap and both windows are used. */
const okSoon =
  (maxMs: number): Responder =>
  (_req, res) =>
    void setTimeout(() => res.end('ok'), 1 + Math.random() * maxMs);

/** A route with the fields of the agent config that the shared helper's type leaves out. */
interface NamedRoute extends Route {
  name: string;
}

function routesOf(n: number): NamedRoute[] {
  return [
    { name: `group-${n}`, channel: 'group', target: `${group[n - 1]!.url}/hooks` },
    { name: `bench-${n}`, channel: 'bench', target: `${bench[n - 1]!.url}/hooks` },
  ];
}

async function startAgentN(n: number): Promise<AgentHandle> {
  // startAgent writes the routes as JSON: the extra fields reach the agent unchanged.
  const agent = await startAgent(stateDirs[n - 1]!, routesOf(n));
  procs.push(agent);
  return agent;
}

before(
  async () => {
    for (let i = 0; i < 2; i++) {
      group.push(await startApp(okSoon(5)));
      bench.push(await startApp(okSoon(5)));
    }
    dataDir = await tempDir();
    relay = await startRelay({ dataDir });
    groupId = (await relay.api<{ id: string }>('POST', '/api/channels', { name: 'group' })).id;
    benchId = (
      await relay.api<{ id: string }>('POST', '/api/channels', {
        name: 'bench',
        retry: { delaysMs: [200, 200, 200, 200, 200] },
      })
    ).id;
    for (let n = 1; n <= 2; n++) {
      const paired = await pairAgent(relay, [groupId, benchId], `group-agent-${n}`);
      stateDirs.push(paired.stateDir);
      agentIds.push(paired.agentId);
    }
    await startAgentN(1);
    await startAgentN(2);
    const connected = await relay.api<{ agents: { id: string; connected: boolean }[] }>(
      'GET',
      '/api/agents',
    );
    assert.deepEqual(
      connected.agents.map((a) => a.connected),
      [true, true],
      'both agents are connected',
    );
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  for (const p of procs) await p.stop();
  await relay?.stop();
  for (const app of [...group, ...bench]) await app.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  for (const dir of stateDirs) await removeDir(dir);
});

/** The agent that made the delivered attempt of each event (exactly one such attempt each). */
function deliveredBy(events: Map<string, EventView>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [id, e] of events) {
    const delivered = e.attempts.filter((a) => a.outcome === 'delivered');
    assert.equal(delivered.length, 1, `${id} has ${delivered.length} delivered attempts`);
    out.set(id, delivered[0]!.agentId);
  }
  return out;
}

function assertAllAccepted(sent: readonly Sent[], count: number): Map<string, Buffer> {
  assert.equal(sent.length, count, `${sent.length} of ${count} webhooks sent in time`);
  assert.deepEqual(
    sent.filter((s) => s.status !== 202 || s.id === null).map((s) => `seq ${s.seq}: ${s.status}`),
    [],
    'the relay answered every webhook 202',
  );
  const acked = acknowledged(sent);
  assert.equal(acked.size, count);
  return acked;
}

test(
  '1,000 events on two agents: each delivered exactly once, both agents carry load',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [app1, app2] = [need(group[0], 'app 1'), need(group[1], 'app 2')];
    const sent = await burst({
      url: `${r.url}/h/${groupId}/push`,
      count: N,
      inFlight: 20,
      dispatcher: http,
      deadlineMs: 60_000,
      label: 'two-agents',
    });
    const acked = assertAllAccepted(sent, N);
    const events = await waitDelivered(r, groupId, acked.keys(), 60_000);

    const all = [...app1.received, ...app2.received];
    const acc = account(acked, all);
    const at1 = new Set(app1.received.map(eventIdOf));
    const at2 = new Set(app2.received.map(eventIdOf));
    const both = [...at1].filter((id) => at2.has(id));
    console.log(describeAccounting('two agents', N, acc));
    console.log(
      `two agents: split ${app1.received.length} via agent 1 / ${app2.received.length} via ` +
        `agent 2 (${((100 * app1.received.length) / N).toFixed(1)} % / ` +
        `${((100 * app2.received.length) / N).toFixed(1)} %), ${both.length} at both apps`,
    );
    assert.deepEqual(acc.lost, [], `${acc.lost.length} lost`);
    assert.equal(acc.delivered, N, `${N} sent, ${acc.delivered} delivered`);
    assert.equal(acc.duplicates, 0, `${acc.duplicates} duplicates while nothing failed`);
    assert.equal(all.length, N, `${all.length} requests at the two apps for ${N} events`);
    assert.deepEqual(acc.foreign, []);
    assert.deepEqual(acc.wrongBody, []);
    assert.deepEqual(both, [], 'no event went to both agents');
    assert.ok(app1.received.length >= N / 10, `agent 1 delivered ${app1.received.length} of ${N}`);
    assert.ok(app2.received.length >= N / 10, `agent 2 delivered ${app2.received.length} of ${N}`);

    // The relay's record agrees with the apps: one attempt each, by the agent whose app got it.
    const by = deliveredBy(events);
    const mismatched = [...by].filter(([id, agent]) =>
      agent === agentIds[0] ? !at1.has(id) : agent === agentIds[1] ? !at2.has(id) : true,
    );
    assert.deepEqual(
      mismatched,
      [],
      'each event was recorded as delivered by the agent of its app',
    );
    const notOnce = [...events.values()].filter((e) => e.attemptCount !== 1);
    assert.deepEqual(
      notOnce.map((e) => `${e.id}: ${e.attemptCount}`),
      [],
      'one attempt per event',
    );
  },
);

test(
  'kill -9 of one agent mid-burst: every acknowledged event is delivered, the other takes over',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [app1, app2] = [need(group[0], 'app 1'), need(group[1], 'app 2')];
    const agent1 = need(procs[0], 'agent 1');
    for (const app of [app1, app2]) app.respond = okSoon(20);
    const before1 = app1.received.length;
    const before2 = app2.received.length;
    const received = () => app1.received.length - before1 + app2.received.length - before2;

    let killed: Promise<number | null> | undefined;
    let answeredAtKill = 0;
    let answered = 0;
    const logFrom = r.proc.lines.length;
    const earlier = new Set((await listChannel(r, groupId)).map((e) => e.id));
    /**
     * Taken once the relay has dropped agent 1's session: what agent 1 had delivered by then,
     * and the events of this burst not yet delivered (agent 2's to take).
     */
    let snapshot: Promise<{ byAgent1: Set<string>; pending: Set<string> }> | undefined;
    const takeSnapshot = async () => {
      await r.proc.waitFor(
        (l) => l.msg === 'agent disconnected' && l['agentId'] === agentIds[0],
        20_000,
        logFrom,
      );
      const events = await listChannel(r, groupId);
      const byAgent1 = new Set<string>();
      const pending = new Set<string>();
      for (const e of events) {
        if (earlier.has(e.id)) continue;
        if (e.status !== 'delivered') pending.add(e.id);
        else if (e.attempts.some((a) => a.outcome === 'delivered' && a.agentId === agentIds[0]))
          byAgent1.add(e.id);
      }
      return { byAgent1, pending };
    };
    const sent = await burst({
      url: `${r.url}/h/${groupId}/kill`,
      count: N,
      inFlight: 20,
      ratePerSec: 300,
      dispatcher: http,
      deadlineMs: 60_000,
      label: 'two-agents-kill',
      onAnswer: () => {
        answered++;
        if (!killed && received() >= KILL_AFTER) {
          answeredAtKill = answered;
          killed = agent1.proc.kill('SIGKILL');
          snapshot = killed.then(takeSnapshot);
        }
      },
    });
    assert.ok(killed, `agent 1 was killed (${received()} requests at the apps)`);
    await killed;
    assert.equal(agent1.proc.child.signalCode, 'SIGKILL', 'agent 1 died of SIGKILL');
    const atDeath = await need(snapshot, 'snapshot at the death of agent 1');
    // Taken once the relay has dropped the session: from here on nothing may reach app 1.
    const app1AtDeath = app1.received.length;
    const acked = assertAllAccepted(sent, N);
    assert.ok(answeredAtKill < N, `mid-burst: ${answeredAtKill} of ${N} answered at the kill`);

    const events = await waitDelivered(r, groupId, acked.keys(), 60_000);
    const mine = (apps: TestApp, from: number) =>
      apps.received.slice(from).filter((req) => acked.has(eventIdOf(req)));
    const got1 = mine(app1, before1);
    const got2 = mine(app2, before2);
    const acc = account(acked, [...got1, ...got2]);
    const ids1 = new Set(got1.map(eventIdOf));
    const ids2 = new Set(got2.map(eventIdOf));
    const by = deliveredBy(events);
    const byAgent1 = [...by.values()].filter((a) => a === agentIds[0]).length;
    const byAgent2 = [...by.values()].filter((a) => a === agentIds[1]).length;
    // Reached app 1 but its ack died with agent 1: agent 2 delivered it again, same id.
    const takenOver = [...ids1].filter((id) => by.get(id) === agentIds[1]);
    const pendingAtDeath = [...atDeath.pending].filter((id) => acked.has(id));
    console.log(
      `kill one agent: SIGKILL after ${answeredAtKill} of ${N} answered; when the relay dropped ` +
        `its session agent 1 had delivered ${atDeath.byAgent1.size} and ${pendingAtDeath.length} ` +
        `stored events were not delivered yet; in the end ${byAgent1} delivered by agent 1, ` +
        `${byAgent2} by agent 2; ${takenOver.length} reached app 1 unacknowledged and were ` +
        `delivered again by agent 2`,
    );
    console.log(describeAccounting('kill one agent', N, acc));
    assert.deepEqual(acc.lost, [], `${acc.lost.length} acknowledged events lost`);
    assert.equal(acc.delivered, N, `${N} acknowledged, ${acc.delivered} delivered`);
    assert.deepEqual(acc.foreign, []);
    assert.deepEqual(acc.wrongBody, [], 'every request carries the body sent under its id');
    assert.equal(acc.reIdentified, 0, 'duplicates only ever under the same event id');
    assert.equal(byAgent1 + byAgent2, N);
    assert.equal(app1.received.length, app1AtDeath, 'nothing reached app 1 after agent 1 died');
    // Each event recorded as delivered by an agent reached that agent's app.
    for (const [id, agent] of by) {
      const ids = agent === agentIds[0] ? ids1 : ids2;
      assert.ok(ids.has(id), `${id} recorded as delivered by ${agent} but not at its app`);
    }
    // Nothing was credited to agent 1 once its session was gone: agent 2 delivered the rest,
    // including whatever agent 1 held unacknowledged.
    assert.equal(byAgent1, atDeath.byAgent1.size, 'agent 1 delivered nothing after it died');
    assert.ok(byAgent2 > 0, `agent 2 delivered ${byAgent2}`);
    assert.equal(byAgent2, N - atDeath.byAgent1.size);
    assert.deepEqual(
      pendingAtDeath.filter((id) => by.get(id) !== agentIds[1]),
      [],
      'every event pending at the death of agent 1 was delivered by agent 2',
    );
    // Duplicates are exactly the events that reached app 1 without an ack.
    assert.equal(acc.duplicates, takenOver.length, 'duplicates = events taken over after app 1');
    assert.equal(got1.length + got2.length, N + acc.duplicates);
  },
);

test(
  'an agent whose app fails is benched: new events go to the healthy agent',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const [failing, healthy] = [need(bench[0], 'bench app 1'), need(bench[1], 'bench app 2')];
    // Agent 1 died in the previous test: bring it back on its own state dir.
    assert.notEqual(procs[0]?.proc.child.signalCode, null, 'agent 1 is down');
    await startAgentN(1);
    await eventually(
      async () => {
        const list = await r.api<{ agents: { connected: boolean }[] }>('GET', '/api/agents');
        return list.agents.every((a) => a.connected) ? true : undefined;
      },
      20_000,
      'both agents connected',
    );
    failing.respond = (_req, res) => {
      res.statusCode = 500;
      res.end('down');
    };
    healthy.respond = okSoon(3);

    // Bursts of 20 at once, so that both sessions get some, until agent 1 has failed 3 times.
    const warmup: Sent[] = [];
    let failed1 = 0;
    for (let round = 0; round < 10 && failed1 < 3; round++) {
      const sentNow = await burst({
        url: `${r.url}/h/${benchId}/warmup`,
        count: 20,
        inFlight: 20,
        dispatcher: http,
        deadlineMs: 20_000,
        label: `bench-warmup-${round}`,
      });
      warmup.push(...sentNow);
      const ids = new Set(acknowledged(sentNow).keys());
      // Once every event of the round has had its first attempt acknowledged, count.
      failed1 = await eventually(
        async () => {
          const events = (await listChannel(r, benchId)).filter((e) => ids.has(e.id));
          if (events.length !== ids.size || events.some((e) => e.attempts.length === 0)) {
            return undefined;
          }
          return (await listChannel(r, benchId))
            .flatMap((e) => e.attempts)
            .filter((a) => a.agentId === agentIds[0] && a.outcome === 'failed').length;
        },
        20_000,
        'the first attempt of every warm-up event',
      );
    }
    assert.ok(failed1 >= 3, `agent 1 failed ${failed1} times during the warm-up`);
    const warmAcked = acknowledged(warmup);
    assert.equal(warmAcked.size, warmup.length, 'every warm-up webhook was accepted');
    const failingBefore = failing.received.length;

    const sent = await burst({
      url: `${r.url}/h/${benchId}/after`,
      count: BENCH_N,
      inFlight: 20,
      dispatcher: http,
      deadlineMs: 30_000,
      label: 'bench',
    });
    const acked = assertAllAccepted(sent, BENCH_N);
    // The warm-up events that failed on agent 1 are retried on agent 2 as well.
    await waitDelivered(r, benchId, [...acked.keys(), ...warmAcked.keys()], 30_000);

    const toFailing = failing.received.filter((req) => acked.has(eventIdOf(req)));
    const atHealthy = countById(healthy.received.filter((req) => acked.has(eventIdOf(req))));
    const warmAtFailing = new Set(failing.received.slice(0, failingBefore).map(eventIdOf));
    const warmRecovered = [...warmAtFailing].filter((id) =>
      healthy.received.some((q) => eventIdOf(q) === id),
    );
    console.log(
      `bench: warm-up ${warmup.length} events, ${failingBefore} requests to the failing app ` +
        `(${failed1} failures recorded for agent 1), all ${warmAtFailing.size} retried on agent 2 ` +
        `(${warmRecovered.length}); then ${BENCH_N} sent: ${toFailing.length} to the failing ` +
        `app, ${atHealthy.size} delivered by the healthy one`,
    );
    assert.ok(toFailing.length <= 10, `${toFailing.length} of ${BENCH_N} went to the failing app`);
    assert.equal(
      atHealthy.size,
      BENCH_N,
      `${atHealthy.size} of ${BENCH_N} reached the healthy app`,
    );
    assert.equal(
      warmRecovered.length,
      warmAtFailing.size,
      'failed warm-up events delivered by agent 2',
    );
  },
);
