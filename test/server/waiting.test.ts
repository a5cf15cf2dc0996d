/** Why an event waits: one test per reason, and the ordering key's blocker read from a store. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  explainWaiting,
  WaitingExplainer,
  type WaitingFacts,
} from '../../server/dispatch/waiting.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import type {
  AgentRecord,
  Attempt,
  ChannelRecord,
  EventSummary,
} from '../../server/store/types.ts';

const NOW = 1_700_000_000_000;
const KEY = { kty: 'OKP', crv: 'Ed25519', x: 'x' } as const;

const channel: ChannelRecord = {
  id: 'ch_1',
  name: 'github',
  verify: null,
  response: { mode: 'async', timeoutMs: 10_000 },
  retry: { delaysMs: [1_000] },
  ordered: false,
  orderingKey: null,
  rateLimit: null,
  maxBodyBytes: 1_024,
  methods: null,
  paths: null,
  createdAt: NOW,
};

function agent(id: string, name: string, paired = true): AgentRecord {
  return {
    id,
    name,
    channels: ['ch_1'],
    publicKey: paired ? KEY : null,
    createdAt: NOW,
    pairedAt: paired ? NOW : null,
    lastSeenAt: null,
    version: null,
  };
}

function event(extra: Partial<EventSummary> = {}): EventSummary {
  return {
    id: 'evt_2',
    channelId: 'ch_1',
    status: 'queued',
    receivedAt: NOW - 1_000,
    method: 'POST',
    path: '',
    query: '',
    size: 3,
    attemptCount: 0,
    attempts: [],
    nextAttemptAt: 0,
    reason: null,
    orderKey: '',
    deliveredRoutes: [],
    replays: 0,
    ...extra,
  };
}

function attempt(extra: Partial<Attempt>): Attempt {
  return {
    at: NOW - 500,
    agentId: 'ag_a',
    outcome: 'failed',
    status: 500,
    durationMs: 3,
    error: null,
    ...extra,
  };
}

function facts(extra: Partial<WaitingFacts> = {}): WaitingFacts {
  return {
    channel,
    granted: [agent('ag_a', 'laptop')],
    connected: () => true,
    deliveringBy: undefined,
    blockedBy: undefined,
    now: NOW,
    ...extra,
  };
}

test('finished events do not wait', () => {
  for (const status of ['delivered', 'failed', 'rejected', 'filtered'] as const) {
    assert.equal(explainWaiting(event({ status }), facts()), undefined);
  }
});

test('no_agent: no agent is granted the channel', () => {
  const w = explainWaiting(event(), facts({ granted: [] }));
  assert.equal(w?.reason, 'no_agent');
  assert.match(w.message, /no agent is granted channel "github"/);
});

test('agent_offline: the one granted agent is not connected, or not paired', () => {
  const w = explainWaiting(event(), facts({ connected: () => false }));
  assert.deepEqual(
    { reason: w?.reason, agentId: w?.agentId, agentName: w?.agentName },
    { reason: 'agent_offline', agentId: 'ag_a', agentName: 'laptop' },
  );
  assert.match(w!.message, /agent "laptop" \(ag_a\).*is not connected/);
  const unpaired = explainWaiting(
    event(),
    facts({ granted: [agent('ag_a', 'laptop', false)], connected: () => false }),
  );
  assert.match(unpaired!.message, /is not paired yet/);
  const two = explainWaiting(
    event(),
    facts({ granted: [agent('ag_a', 'a'), agent('ag_b', 'b')], connected: () => false }),
  );
  assert.equal(two?.reason, 'agent_offline');
  assert.equal(two.agentId, undefined);
  assert.match(two.message, /none of the 2 agents granted channel "github" is connected/);
});

test('no_route: the last attempt found no route on the agent', () => {
  const e = event({
    attempts: [attempt({ outcome: 'no_route', status: null, error: 'no route' })],
    nextAttemptAt: NOW + 30_000,
  });
  const w = explainWaiting(e, facts());
  assert.equal(w?.reason, 'no_route');
  assert.equal(w.retryAt, NOW + 30_000);
  assert.equal(w.agentName, 'laptop');
  assert.match(w.message, /agent "laptop" \(ag_a\) has no route for channel "github"/);
});

test('retry: waiting for its retry time after the last error', () => {
  const e = event({
    attemptCount: 1,
    attempts: [attempt({ error: null, status: 503 })],
    nextAttemptAt: NOW + 5_000,
  });
  const w = explainWaiting(e, facts());
  assert.equal(w?.reason, 'retry');
  assert.equal(w.retryAt, NOW + 5_000);
  assert.equal(w.lastError, 'app answered 503');
  assert.equal(
    w.message,
    `waiting to retry at ${new Date(NOW + 5_000).toISOString()} after attempt 1 failed: app answered 503`,
  );
  const multiline = explainWaiting(
    event({ attemptCount: 2, attempts: [attempt({ error: 'connect\nECONNREFUSED' })] }),
    facts(),
  );
  assert.equal(multiline?.lastError, 'connect ECONNREFUSED');
  assert.match(multiline.message, /retry now after attempt 2 failed/);
});

test('ordered: held behind an earlier event of its key, before any other cause but offline', () => {
  const e = event({
    orderKey: 'repo-1',
    attemptCount: 1,
    attempts: [attempt({})],
    nextAttemptAt: NOW + 5_000,
  });
  const w = explainWaiting(e, facts({ blockedBy: 'evt_1' }));
  assert.equal(w?.reason, 'ordered');
  assert.equal(w.blockedBy, 'evt_1');
  assert.match(
    w.message,
    /held behind evt_1, an earlier event of its ordering key \(key "repo-1"\)/,
  );
  const offline = explainWaiting(e, facts({ blockedBy: 'evt_1', connected: () => false }));
  assert.equal(offline?.reason, 'agent_offline');
});

test('delivering: by the agent holding the claim; a due event names where it goes', () => {
  const w = explainWaiting(event({ status: 'delivering' }), facts({ deliveringBy: 'ag_a' }));
  assert.deepEqual(w, {
    reason: 'delivering',
    message: 'being delivered by agent "laptop" (ag_a)',
    agentId: 'ag_a',
    agentName: 'laptop',
  });
  const two = [agent('ag_a', 'a'), agent('ag_b', 'b')];
  const unknown = explainWaiting(event({ status: 'delivering' }), facts({ granted: two }));
  assert.equal(unknown?.message, 'being delivered by an agent');
  assert.equal(unknown.agentId, undefined);
  const due = explainWaiting(event(), facts());
  assert.equal(due?.reason, 'delivering');
  assert.match(due.message, /^due: goes to agent "laptop" \(ag_a\) as soon as it has room$/);
});

test('the explainer finds the head of an ordering key in the store', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-waiting-'));
  const store = new EmbeddedStore({ dataDir });
  await store.open();
  t.after(async () => {
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const ordered = { ...channel, ordered: true };
  const add = async (id: string, orderKey: string) =>
    store.appendEvent({
      id,
      channelId: 'ch_1',
      receivedAt: NOW,
      method: 'POST',
      path: '',
      query: '',
      headers: [],
      originalUrl: 'https://relay.example.com/h/ch_1',
      remoteAddress: '203.0.113.9',
      body: Buffer.from('{}'),
      orderKey,
    });
  for (const [id, key] of [
    ['evt_01', 'a'],
    ['evt_02', 'b'],
    ['evt_03', 'a'],
    ['evt_04', 'b'],
    ['evt_05', 'c'],
  ] as const) {
    await add(id, key);
  }
  // The head of key "a" is claimed (in flight); "b"'s head is queued.
  const claim = await store.claim({
    owner: 'relay-test',
    channelId: 'ch_1',
    ordered: true,
    limit: 1,
    now: NOW,
    leaseMs: 30_000,
  });
  assert.equal(claim.claims[0]?.event.id, 'evt_01');
  let connected = true;
  const explainer = new WaitingExplainer({
    store,
    channel: () => ordered,
    agents: () => [agent('ag_a', 'laptop')],
    connected: () => connected,
    deliveringBy: (id) => (id === 'evt_01' ? 'ag_a' : undefined),
    now: () => NOW,
  });
  const page = await store.listEvents({ channelId: 'ch_1', limit: 10 });
  const w = await explainer.explain(page.events);
  assert.equal(w.get('evt_01')?.reason, 'delivering');
  assert.equal(w.get('evt_03')?.blockedBy, 'evt_01');
  assert.equal(w.get('evt_04')?.blockedBy, 'evt_02');
  // Heads of their keys wait for nothing but room.
  assert.equal(w.get('evt_02')?.reason, 'delivering');
  assert.equal(w.get('evt_05')?.reason, 'delivering');
  // One event alone (as `events show` asks) finds its blocker too.
  const one = await explainer.explain([(await store.getEvent('evt_04'))!]);
  assert.equal(one.get('evt_04')?.reason, 'ordered');
  connected = false;
  const offline = await explainer.explain([(await store.getEvent('evt_04'))!]);
  assert.equal(offline.get('evt_04')?.reason, 'agent_offline');
});
