/**
 * The tunnel runs through a TCP proxy that (a) resets every connection every ~300 ms during a
 * burst (each time the agent has a session again), or (b) turns half-open: it keeps both
 * sockets but forwards nothing, not even a close.
 * Every webhook acknowledged with 202 reaches the app, duplicates only under the same event id;
 * a half-open tunnel is detected by heartbeats within a few intervals and replaced.
 */
import assert from 'node:assert/strict';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  describeAccounting,
  eventIdOf,
  lineTime,
  linesWith,
  pairAgentVia,
  TcpProxy,
  waitAllDelivered,
} from './helpers.ts';
import { test } from '../helpers/store.ts';

const RELAY_DROP = 'agent stopped answering heartbeats; dropping the session';
const AGENT_DROP = 'the relay stopped answering heartbeats; reconnecting';
const CONNECTED = 'connected to the relay';

interface Setup {
  relay: RelayHandle;
  proxy: TcpProxy;
  app: TestApp;
  agent: AgentHandle;
  channelId: string;
}

/** Relay, proxy in front of it, app, and an agent paired and running through the proxy. */
async function setUp(
  cleanups: (() => Promise<void>)[],
  channel: string,
  heartbeatMs?: number,
): Promise<Setup> {
  const dataDir = await tempDir();
  cleanups.push(() => removeDir(dataDir));
  const app = await startApp();
  cleanups.push(() => app.close());
  const relay = await startRelay({ dataDir, ...(heartbeatMs ? { heartbeatMs } : {}) });
  cleanups.push(() => relay.stop());
  const proxy = await TcpProxy.start(relay.url);
  cleanups.push(() => proxy.close());
  const created = await relay.api<{ id: string }>('POST', '/api/channels', { name: channel });
  const { stateDir } = await pairAgentVia(relay, proxy.url, [created.id]);
  cleanups.push(() => removeDir(stateDir));
  const pairedThrough = proxy.accepted;
  assert.ok(pairedThrough >= 1, 'pairing went through the proxy');
  const agent = await startAgent(stateDir, [{ channel, target: `${app.url}/hooks` }]);
  // Registered before the removal of the state dir runs (cleanups run in reverse).
  cleanups.push(() => agent.stop());
  assert.ok(proxy.accepted > pairedThrough, 'the agent dials the proxy, not the relay');
  return { relay, proxy, app, agent, channelId: created.id };
}

/** Runs every cleanup, newest first, even when one fails; then reports the first failure. */
async function runCleanups(cleanups: (() => Promise<void>)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw failures[0];
}

test('connections reset every ~300 ms during a burst of 1,000: nothing acknowledged is lost', async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  t.after(() => runCleanups(cleanups));
  const { relay, proxy, app, agent, channelId } = await setUp(cleanups, 'cuts');
  const http = burstDispatcher(20);
  cleanups.push(() => http.close());
  // A little app latency keeps deliveries in flight when a cut comes.
  app.respond = (_req, res) => void setTimeout(() => res.end('ok'), 5 + Math.random() * 30);

  const SENT = 1_000;
  const CUT_EVERY_MS = 300;
  const MIN_LIVE_CUTS = 6;
  const MAX_ROUNDS = 200;
  let rounds = 0;
  let liveCuts = 0;
  let cutsWithBacklog = 0;
  let burstDone = false;
  let cutterDone!: () => void;
  const cutterFinished = new Promise<void>((resolve) => (cutterDone = resolve));
  // Sessions (welcomes logged by the agent) that were already cut; the first one is live.
  let sessionsCut = linesWith(agent.proc, CONNECTED).length - 1;
  // Every ~300 ms, reset every connection once the agent has a session again (a reconnect still
  // in its handshake is left alone: on a busy machine it may take longer than 300 ms, and cutting
  // it would only grow the agent's backoff). Runs for the whole burst and at least MIN_LIVE_CUTS
  // cuts; bounded at MAX_ROUNDS rounds.
  const cutter = setInterval(() => {
    rounds++;
    const sessions = linesWith(agent.proc, CONNECTED).length;
    if (sessions > sessionsCut && proxy.cutAll() > 0) {
      sessionsCut = sessions;
      liveCuts++;
      if (new Set(app.received.map(eventIdOf)).size < SENT) cutsWithBacklog++;
    }
    if ((burstDone && liveCuts >= MIN_LIVE_CUTS) || rounds >= MAX_ROUNDS) {
      clearInterval(cutter);
      cutterDone();
    }
  }, CUT_EVERY_MS);
  cleanups.push(async () => clearInterval(cutter));

  const sent = await burst({
    url: `${relay.url}/h/${channelId}/cuts`,
    count: SENT,
    inFlight: 20,
    // Paced over ~5 s so that the burst spans many cuts.
    ratePerSec: 200,
    dispatcher: http,
    deadlineMs: 45_000,
    label: 'cuts',
  });
  burstDone = true;
  await cutterFinished;
  const receivedWhileCutting = app.received.length;

  const acked = acknowledged(sent);
  const notAcked = sent.filter((s) => s.status !== 202 || s.id === null);
  assert.equal(sent.length, SENT, `${sent.length} of ${SENT} requests were sent in time`);
  assert.deepEqual(
    notAcked.map((s) => `seq ${s.seq}: ${s.status ?? s.error}`),
    [],
    'the relay (not behind the proxy) answered every webhook 202',
  );
  assert.equal(acked.size, SENT);
  const reconnects = linesWith(agent.proc, CONNECTED).length - 1;
  console.log(
    `tunnel cuts: ${rounds} rounds every ${CUT_EVERY_MS} ms, ${liveCuts} live tunnels reset ` +
      `(${cutsWithBacklog} while deliveries were outstanding), ${reconnects} agent reconnects, ` +
      `${receivedWhileCutting} requests at the app while cutting`,
  );
  assert.ok(liveCuts >= MIN_LIVE_CUTS, `${liveCuts} live tunnels reset (≥ ${MIN_LIVE_CUTS})`);
  assert.ok(
    cutsWithBacklog >= 3,
    `${cutsWithBacklog} resets came while webhooks were still on their way to the app (≥ 3)`,
  );
  assert.ok(receivedWhileCutting > 0, 'deliveries went on while the tunnel was being cut');

  await waitAllDelivered(relay, channelId, acked.keys(), 90_000);
  const a = account(acked, app.received);
  console.log(describeAccounting('tunnel cuts', SENT, a));
  assert.deepEqual(a.lost, [], `${a.lost.length} acknowledged webhooks lost`);
  assert.equal(a.delivered, SENT, `${SENT} acknowledged, ${a.delivered} delivered`);
  assert.deepEqual(a.foreign, [], 'every request at the app carries an acknowledged event id');
  assert.deepEqual(a.wrongBody, [], 'every request carries the body sent under its id');
  assert.equal(a.reIdentified, 0, 'no webhook arrived under two event ids');
  assert.equal(app.received.length, SENT + a.duplicates);
});

test('a half-open tunnel is detected by heartbeats and replaced; webhooks sent meanwhile arrive', async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  t.after(() => runCleanups(cleanups));
  const HEARTBEAT_MS = 200;
  const BOUND_MS = 10 * HEARTBEAT_MS;
  const { relay, proxy, app, agent, channelId } = await setUp(cleanups, 'halfopen', HEARTBEAT_MS);
  const http = burstDispatcher(10);
  cleanups.push(() => http.close());
  const url = `${relay.url}/h/${channelId}/halfopen`;

  // The tunnel works through the proxy before the fault.
  const warmup = await burst({
    url,
    count: 20,
    inFlight: 5,
    dispatcher: http,
    deadlineMs: 20_000,
    label: 'warmup',
  });
  const warm = acknowledged(warmup);
  assert.equal(warm.size, 20, 'warm-up webhooks acknowledged');
  await waitAllDelivered(relay, channelId, warm.keys(), 30_000);

  const relayFrom = relay.proc.lines.length;
  const agentFrom = agent.proc.lines.length;
  const acceptedBefore = proxy.accepted;
  const t0 = Date.now();
  proxy.blackhole();
  const during = await burst({
    url,
    count: 30,
    inFlight: 5,
    dispatcher: http,
    deadlineMs: 20_000,
    label: 'blackhole-1',
  });

  const relayLine = await relay.proc.waitForMsg(RELAY_DROP, 30_000, relayFrom);
  const agentLine = await agent.proc.waitForMsg(AGENT_DROP, 30_000, agentFrom);
  const relayDetectMs = lineTime(relayLine) - t0;
  const agentDetectMs = lineTime(agentLine) - t0;
  // More webhooks once the relay knows the session is dead (no agent connected).
  const after = await burst({
    url,
    count: 30,
    inFlight: 5,
    dispatcher: http,
    deadlineMs: 20_000,
    label: 'blackhole-2',
  });
  const acked = new Map([...acknowledged(during), ...acknowledged(after)]);
  assert.equal(
    acked.size,
    60,
    `${acked.size} of 60 webhooks sent during the blackhole acknowledged`,
  );
  const deliveredInBlackhole = app.received.filter((r) => acked.has(eventIdOf(r))).length;
  assert.equal(deliveredInBlackhole, 0, 'nothing crosses a blackholed tunnel');

  // The partition lasts until the agent has dialled into it at least once: that dial hangs
  // (accepted, never answered) and the agent must give up on it by itself.
  const acceptedAtBlackhole = acceptedBefore;
  await eventually(
    () => (proxy.accepted > acceptedAtBlackhole ? true : undefined),
    30_000,
    'the agent to dial again during the blackhole',
  );
  const dialsIntoBlackhole = proxy.accepted - acceptedAtBlackhole;
  const healedAt = Date.now();
  proxy.heal();
  // While blackholed no connection can complete, so the next 'connected' line is the reconnect.
  const reconnected = await agent.proc.waitForMsg(CONNECTED, 60_000, agentFrom);
  const reconnectMs = lineTime(reconnected) - healedAt;
  assert.ok(reconnectMs >= 0, `the agent reconnected after the heal (${reconnectMs} ms)`);
  await waitAllDelivered(relay, channelId, acked.keys(), 60_000);
  const a = account(acked, app.received);
  console.log(
    `half-open: heartbeat ${HEARTBEAT_MS} ms; relay dropped the session after ${relayDetectMs} ms, ` +
      `agent noticed after ${agentDetectMs} ms (bound ${BOUND_MS} ms); ` +
      `${dialsIntoBlackhole} dial(s) into the blackhole; reconnected ${reconnectMs} ms after the heal`,
  );
  console.log(describeAccounting('half-open', 60, a));
  assert.ok(
    relayDetectMs > 0 && relayDetectMs <= BOUND_MS,
    `relay detected the half-open tunnel in ${relayDetectMs} ms (≤ ${BOUND_MS})`,
  );
  assert.ok(
    agentDetectMs > 0 && agentDetectMs <= BOUND_MS,
    `agent detected the half-open tunnel in ${agentDetectMs} ms (≤ ${BOUND_MS})`,
  );
  assert.deepEqual(a.lost, [], `${a.lost.length} acknowledged webhooks lost`);
  assert.equal(a.delivered, 60);
  assert.deepEqual(a.wrongBody, [], 'every request carries the body sent under its id');
  assert.equal(a.reIdentified, 0, 'no webhook arrived under two event ids');
});
