/**
 * A relay that misbehaves (compromised or buggy), from the agent's side: a fake relay speaks
 * raw frames to a real agent process. The agent holds it to its `welcome` (window, 64 MiB of
 * unacknowledged bodies, granted channels) and closes with 1002 when it breaks it, passes an
 * app's answer back only for `sync: true` routes, answers a deliver it cannot read in full with
 * a failed ack on a tunnel that stays up, and parses no large or deep body for JSON rules. A
 * relay that keeps to its word is never disconnected, redeliveries and the byte edge included.
 */
import assert from 'node:assert/strict';
import { type TestContext } from 'node:test';
import { newKeyPair, saveIdentity } from '../../agent/identity.ts';
import { MAX_HEADER_PAIRS, MAX_INFLIGHT_BYTES, type ChannelRef } from '../../shared/protocol.ts';
import { startApp, type Responder, type TestApp } from '../helpers/app.ts';
import {
  removeDir,
  startAgent,
  tempDir,
  type AgentHandle,
  type Route,
} from '../helpers/processes.ts';
import {
  FakeRelay,
  deliverFields,
  memoryMiB,
  type Ack,
  type Closed,
  type RelayConn,
} from './fake-relay.ts';
import { test } from '../helpers/store.ts';

const MiB = 1024 * 1024;
const TIMEOUT = { timeout: 180_000 };
/** No relay runs here, so no store: once is enough. */
const AGENT_ONLY = { ...TIMEOUT, noStore: 'a fake relay faces the agent' };
/** Peak RSS allowed to an agent under attack; before the fix these cases took 600–900 MiB. */
const PEAK_RSS_MIB = 250;

const GITHUB: ChannelRef = { id: 'ch_github000001', name: 'github' };
const STRIPE: ChannelRef = { id: 'ch_stripe000001', name: 'stripe' };

interface Setup {
  app: TestApp;
  relay: FakeRelay;
  agent: AgentHandle;
  /** The first connection, welcomed. */
  conn: RelayConn;
  pid: number;
}

/**
 * An app, a fake relay and a real agent process dialling it with `routes`; the first connection
 * is welcomed with `window` and `channels`. Everything is torn down after the test.
 */
async function setUp(
  t: TestContext,
  opts: {
    window: number;
    channels: ChannelRef[];
    routes: (appUrl: string) => Route[];
    respond?: Responder;
    /** What the welcome says of `answers` (absent: nothing, as a relay from before). */
    answers?: boolean;
  },
): Promise<Setup> {
  const app = await startApp(opts.respond);
  const relay = await FakeRelay.start();
  const stateDir = await tempDir('postern-hostile-');
  let agent: AgentHandle | undefined;
  t.after(async () => {
    await agent?.proc.kill('SIGKILL');
    await relay.close();
    await app.close();
    await removeDir(stateDir);
  });
  await saveIdentity(stateDir, {
    agentId: 'ag_hostile01',
    name: 'hostile-test',
    relayUrl: relay.url,
    audience: relay.url,
    privateKey: newKeyPair().privateKey,
  });
  const started = startAgent(stateDir, opts.routes(app.url));
  const conn = await relay.connection(0);
  await conn.welcome(opts.window, opts.channels, opts.answers);
  agent = await started;
  const pid = agent.proc.child.pid;
  assert.ok(pid !== undefined, 'the agent process runs');
  return { app, relay, agent, conn, pid };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function closedBy(conn: RelayConn, what: string): Promise<Closed> {
  return within(conn.closed, 30_000, what);
}

/** A gate the app waits on: requests are held until `open()`. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

function eventIds(app: TestApp): string[] {
  return app.received.map((r) => String(r.headers['x-postern-event-id']));
}

/** Whether the agent logged a protocol error at all (a well-behaved relay never causes one). */
function protocolErrors(agent: AgentHandle): string[] {
  return agent.proc.lines
    .map((l) => String(l.msg))
    .filter((m) => m.startsWith('protocol error from the relay'));
}

/**
 * Sends `events` the way the real relay does (server/dispatch/sessions.ts): while fewer than
 * `window` deliveries and fewer than MAX_INFLIGHT_BYTES body bytes are unacknowledged, and at
 * once again when an ack frees room. Resolves with the acks once every event is acknowledged;
 * rejects if the connection closes first. Reports the most it ever had in flight.
 */
function sendLikeRelay(
  conn: RelayConn,
  window: number,
  channel: ChannelRef,
  events: { id: string; body: Buffer }[],
): Promise<{ acks: Ack[]; maxInFlight: number; maxBytes: number }> {
  const queue = [...events];
  const inFlight = new Map<string, number>();
  let bytes = 0;
  let maxInFlight = 0;
  let maxBytes = 0;
  const acks: Ack[] = [];
  return new Promise((resolve, reject) => {
    const pump = () => {
      while (queue.length > 0 && inFlight.size < window && bytes < MAX_INFLIGHT_BYTES) {
        const e = queue.shift()!;
        if (inFlight.has(e.id)) throw new Error(`${e.id} sent twice while in flight`);
        inFlight.set(e.id, e.body.length);
        bytes += e.body.length;
        maxInFlight = Math.max(maxInFlight, inFlight.size);
        maxBytes = Math.max(maxBytes, bytes);
        conn.sendDeliver(deliverFields(e.id, channel), e.body);
      }
      if (queue.length === 0 && inFlight.size === 0) resolve({ acks, maxInFlight, maxBytes });
    };
    conn.onAck = (ack) => {
      const size = inFlight.get(ack.eventId);
      if (size === undefined) {
        reject(new Error(`ack for ${ack.eventId}, which is not in flight`));
        return;
      }
      inFlight.delete(ack.eventId);
      bytes -= size;
      acks.push(ack);
      pump();
    };
    void conn.closed.then((c) => reject(new Error(`the agent closed: ${c.code} ${c.reason}`)));
    pump();
  });
}

// ---- a relay that breaks its word ----------------------------------------------------------

test(
  'window 1: 60 delivers of 10 MiB sent at once are cut off after the 2nd with 1002; one request reaches the app; memory stays bounded',
  AGENT_ONLY,
  async (t) => {
    const held = gate();
    t.after(held.open);
    const s = await setUp(t, {
      window: 1,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
      respond: async (_req, res) => {
        await held.wait;
        res.end('ok');
      },
    });
    const body = Buffer.alloc(10 * MiB, 'x');
    for (let i = 0; i < 60; i++) s.conn.sendDeliver(deliverFields(`evt_flood${i}`, GITHUB), body);

    const closed = await closedBy(s.conn, 'the agent to close the flooding relay');
    assert.equal(closed.code, 1002);
    assert.equal(closed.reason, 'deliver beyond the window of 1: 1 already unacknowledged');
    const logged = await s.agent.proc.waitFor((l) => l.code === 'ERR_PROTOCOL_WINDOW_EXCEEDED');
    assert.equal(
      logged.msg,
      'protocol error from the relay: deliver beyond the window of 1: 1 already unacknowledged; closing the connection (1002)',
    );
    await s.app.waitFor(1);
    assert.deepEqual(eventIds(s.app), ['evt_flood0']);
    assert.equal(s.conn.acks().length, 0, 'nothing was acknowledged on the closed connection');
    const mem = await memoryMiB(s.pid);
    t.diagnostic(`agent RSS peak ${mem.peak.toFixed(0)} MiB, now ${mem.now.toFixed(0)} MiB`);
    assert.ok(mem.peak < PEAK_RSS_MIB, `agent peak RSS ${mem.peak.toFixed(0)} MiB`);
  },
);

test(
  'byte bound: with a window of 16, 16 MiB bodies stop at 64 MiB unacknowledged: the 5th is refused with 1002',
  AGENT_ONLY,
  async (t) => {
    const held = gate();
    t.after(held.open);
    const s = await setUp(t, {
      window: 16,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
      respond: async (_req, res) => {
        await held.wait;
        res.end('ok');
      },
    });
    const body = Buffer.alloc(16 * MiB, 'y');
    for (let i = 0; i < 12; i++) s.conn.sendDeliver(deliverFields(`evt_big${i}`, GITHUB), body);

    const closed = await closedBy(s.conn, 'the agent to close the relay past the byte bound');
    assert.equal(closed.code, 1002);
    assert.equal(
      closed.reason,
      `deliver beyond ${MAX_INFLIGHT_BYTES} unacknowledged body bytes: ${MAX_INFLIGHT_BYTES} already`,
    );
    await s.app.waitFor(4);
    assert.deepEqual(eventIds(s.app).sort(), ['evt_big0', 'evt_big1', 'evt_big2', 'evt_big3']);
    const mem = await memoryMiB(s.pid);
    t.diagnostic(`agent RSS peak ${mem.peak.toFixed(0)} MiB, now ${mem.now.toFixed(0)} MiB`);
    // 64 MiB held for the app, one 16 MiB frame being read, and the process itself.
    assert.ok(mem.peak < PEAK_RSS_MIB + 64, `agent peak RSS ${mem.peak.toFixed(0)} MiB`);
  },
);

test(
  'a deliver for a channel id the welcome did not grant is closed with 1002 and never reaches the app; a granted id goes by its granted name',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 8,
      channels: [GITHUB],
      // The agent routes stripe too (by name and by id): only the grant keeps the relay from it.
      routes: (url) => [
        { channel: 'github', target: `${url}/github` },
        { channel: 'stripe', target: `${url}/stripe` },
        { channel: STRIPE.id, target: `${url}/stripe-by-id` },
      ],
    });
    s.conn.sendDeliver(deliverFields('evt_stripe', STRIPE));
    const first = await closedBy(s.conn, 'a close for the ungranted channel');
    assert.deepEqual(first, {
      code: 1002,
      reason: 'deliver for channel "ch_stripe000001", which the welcome did not grant',
    });
    await s.agent.proc.waitFor((l) => l.code === 'ERR_PROTOCOL_CHANNEL_NOT_GRANTED');

    // A route's channel name passed off as a channel id: not a granted id either.
    const second = await s.relay.connection(1);
    await second.welcome(8, [GITHUB]);
    second.sendDeliver(deliverFields('evt_by_name', { id: 'stripe', name: 'stripe' }));
    const closed = await closedBy(second, 'a close for a name used as an id');
    assert.deepEqual(closed, {
      code: 1002,
      reason: 'deliver for channel "stripe", which the welcome did not grant',
    });

    // The granted id under another channel's name: routed as the channel granted, never to
    // the other channel's routes (the tunnel stays up: a renamed channel looks the same).
    const third = await s.relay.connection(2);
    await third.welcome(8, [GITHUB]);
    third.sendDeliver(deliverFields('evt_renamed', { id: GITHUB.id, name: 'stripe' }));
    assert.equal((await third.ackFor('evt_renamed')).outcome, 'delivered');
    assert.deepEqual(eventIds(s.app), ['evt_renamed']);
    assert.deepEqual(
      s.app.received.map((r) => [r.url, r.headers['x-postern-channel']]),
      [['/github', 'github']],
    );
    assert.equal(third.closedWith, undefined);
  },
);

test(
  'a second welcome, or a deliver before any welcome, is closed with 1002',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 1,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
    });
    // A relay that would widen its window (or its grants) halfway through a connection.
    await s.conn.welcome(4096, [GITHUB, STRIPE]);
    const first = await closedBy(s.conn, 'a close for the second welcome');
    assert.deepEqual(first, { code: 1002, reason: 'a second welcome' });

    const next = await s.relay.connection(1);
    await next.waitFor((f) => f.type === 'hello');
    next.sendDeliver(deliverFields('evt_early', GITHUB));
    const second = await closedBy(next, 'a close for the deliver before welcome');
    assert.deepEqual(second, { code: 1002, reason: 'deliver before welcome' });
    assert.equal(s.app.received.length, 0);
    for (const what of ['a second welcome', 'deliver before welcome']) {
      await s.agent.proc.waitFor(
        (l) => l.code === 'ERR_PROTOCOL_OUT_OF_ORDER' && String(l.msg).includes(`: ${what};`),
      );
    }
  },
);

test(
  'wantResponse on a route without sync: the ack carries no answer; with sync: true it does',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 8,
      channels: [GITHUB, STRIPE],
      routes: (url) => [
        { channel: 'github', target: `${url}/internal-api` },
        { channel: 'stripe', target: `${url}/twiml`, sync: true },
      ],
      respond: (req, res) => {
        res.statusCode = 201;
        res.setHeader('x-app', 'secret-internal-header');
        res.end(`internal answer for ${String(req.headers['x-postern-event-id'])}`);
      },
    });
    s.conn.sendDeliver(deliverFields('evt_plain', GITHUB, { wantResponse: true }));
    const plain = await s.conn.ackFor('evt_plain');
    assert.equal(plain.outcome, 'delivered');
    assert.equal(plain.status, 201);
    assert.equal(plain.body, undefined);
    assert.equal(plain.responseHeaders, undefined);
    assert.equal(plain.response, undefined, 'a relay that did not say `answers` gets none');
    assert.deepEqual(eventIds(s.app), ['evt_plain']);

    s.conn.sendDeliver(deliverFields('evt_sync', STRIPE, { wantResponse: true }));
    const sync = await s.conn.ackFor('evt_sync');
    assert.equal(sync.outcome, 'delivered');
    assert.equal(sync.status, 201);
    assert.equal(Buffer.from(sync.body ?? []).toString(), 'internal answer for evt_sync');
    assert.deepEqual(
      (sync.responseHeaders ?? []).filter(([n]) => n === 'x-app'),
      [['x-app', 'secret-internal-header']],
    );
    assert.equal(sync.response, undefined);
    assert.deepEqual(eventIds(s.app), ['evt_plain', 'evt_sync']);
    assert.equal(s.conn.closedWith, undefined);
  },
);

test(
  'a relay whose welcome says answers: true gets the app’s answer, bounded, on every ack',
  AGENT_ONLY,
  async (t) => {
    const long = Buffer.alloc(3000, 'a');
    const s = await setUp(t, {
      window: 8,
      channels: [GITHUB, STRIPE],
      answers: true,
      routes: (url) => [
        { channel: 'github', target: `${url}/internal-api` },
        { channel: 'stripe', target: `${url}/twiml`, sync: true },
      ],
      respond: (_req, res) => {
        res.statusCode = 500;
        res.setHeader('x-app', 'trace-1');
        res.end(long);
      },
    });
    s.conn.sendDeliver(deliverFields('evt_plain', GITHUB, { wantResponse: true }));
    const plain = await s.conn.ackFor('evt_plain');
    assert.equal(plain.outcome, 'failed');
    assert.equal(plain.status, 500);
    assert.equal(plain.responseHeaders, undefined, 'no sync route: nothing for the provider');
    assert.deepEqual(Buffer.from(plain.body ?? []), long.subarray(0, 2048));
    assert.equal(plain.response?.bodyBytes, 3000);
    assert.equal(plain.response?.truncated, true);
    assert.deepEqual(
      plain.response?.headers.filter(([n]) => n === 'x-app'),
      [['x-app', 'trace-1']],
    );

    s.conn.sendDeliver(deliverFields('evt_sync', STRIPE, { wantResponse: true }));
    const sync = await s.conn.ackFor('evt_sync');
    assert.deepEqual(Buffer.from(sync.body ?? []), long, 'the whole answer, once');
    assert.ok(sync.responseHeaders);
    assert.equal(sync.response?.bodyBytes, 3000);
    assert.equal(s.conn.closedWith, undefined);
  },
);

test(
  'a deliver with 600 headers gets a failed ack naming the limit; the tunnel stays up and the next deliver goes through',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 1,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
    });
    const headers = Array.from({ length: 600 }, (_, i) => [`x-h${i}`, 'v']);
    s.conn.sendDeliver(deliverFields('evt_headers', GITHUB, { headers }), Buffer.from('{}'));
    const refused = await s.conn.ackFor('evt_headers');
    assert.equal(refused.outcome, 'failed');
    assert.equal(
      refused.error,
      `deliver frame refused: headers: expected a list of at most ${MAX_HEADER_PAIRS} [name, value] pairs`,
    );
    assert.equal(refused.status, undefined);
    // Window 1: the refused deliver's slot was freed by its ack, so this one is in bounds.
    s.conn.sendDeliver(deliverFields('evt_after', GITHUB), Buffer.from('{"ok":true}'));
    const ok = await s.conn.ackFor('evt_after');
    assert.equal(ok.outcome, 'delivered');
    assert.deepEqual(eventIds(s.app), ['evt_after']);
    assert.equal(s.conn.closedWith, undefined, 'the same connection carried both');
    assert.equal(s.relay.connections.length, 1, 'the agent never reconnected');
    assert.deepEqual(protocolErrors(s.agent), []);
  },
);

test(
  '20 MB of deeply nested JSON under a JSON match rule: not parsed, filtered, memory bounded',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 4,
      channels: [GITHUB],
      routes: (url) => [
        {
          name: 'deploys',
          channel: 'github',
          target: `${url}/deploys`,
          match: { json: { type: 'x' } },
        },
      ],
    });
    const depth = 10_000_000;
    const body = Buffer.alloc(depth * 2 + 20, '[');
    const head = Buffer.from('{"type":"x","deep":');
    head.copy(body, 0);
    body.fill(']', head.length + depth, body.length - 1);
    body[body.length - 1] = 0x7d; // }
    for (const id of ['evt_deep1', 'evt_deep2'])
      s.conn.sendDeliver(deliverFields(id, GITHUB), body);
    for (const id of ['evt_deep1', 'evt_deep2']) {
      assert.equal((await s.conn.ackFor(id, 60_000)).outcome, 'filtered');
    }
    // The rule itself works on a small body.
    s.conn.sendDeliver(deliverFields('evt_small', GITHUB), Buffer.from('{"type":"x"}'));
    assert.equal((await s.conn.ackFor('evt_small')).outcome, 'delivered');
    assert.deepEqual(eventIds(s.app), ['evt_small']);
    const mem = await memoryMiB(s.pid);
    t.diagnostic(`agent RSS peak ${mem.peak.toFixed(0)} MiB, now ${mem.now.toFixed(0)} MiB`);
    assert.ok(mem.peak < PEAK_RSS_MIB, `agent peak RSS ${mem.peak.toFixed(0)} MiB`);
  },
);

// ---- a relay that keeps its word is never disconnected ---------------------------------------

test(
  'window 4, sent as the relay sends (again the moment an ack arrives), redeliveries of delivered events included: never disconnected',
  AGENT_ONLY,
  async (t) => {
    const s = await setUp(t, {
      window: 4,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
    });
    const fresh = Array.from({ length: 40 }, (_, i) => ({
      id: `evt_w${i}`,
      body: Buffer.from('{}'),
    }));
    // Acks "lost on the way back": the same events again, answered from the agent's memory.
    const again = fresh.slice(0, 8);
    const run = await within(
      sendLikeRelay(s.conn, 4, GITHUB, [...fresh, ...again]),
      60_000,
      'every delivery to be acknowledged',
    );
    assert.equal(run.acks.length, 48);
    assert.equal(run.maxInFlight, 4, 'the window was full');
    assert.ok(run.acks.every((a) => a.outcome === 'delivered'));
    assert.equal(
      s.app.received.length,
      40,
      'redeliveries of delivered events did not reach the app',
    );
    assert.deepEqual(new Set(eventIds(s.app)), new Set(fresh.map((e) => e.id)));
    assert.equal(s.conn.closedWith, undefined);
    assert.deepEqual(protocolErrors(s.agent), []);
  },
);

test(
  'the byte edge: the relay sends while under 64 MiB, so 4 × 21 MiB are in flight at once: never disconnected',
  AGENT_ONLY,
  async (t) => {
    let app: TestApp | undefined;
    const s = await setUp(t, {
      window: 8,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
      // Held until four are at the app: the agent then has all four unacknowledged.
      respond: async (_req, res) => {
        await app?.waitFor(4);
        res.end('ok');
      },
    });
    app = s.app;
    const body = Buffer.alloc(21 * MiB, 'z');
    const events = Array.from({ length: 6 }, (_, i) => ({ id: `evt_edge${i}`, body }));
    const run = await within(
      sendLikeRelay(s.conn, 8, GITHUB, events),
      120_000,
      'every delivery to be acknowledged',
    );
    assert.equal(run.maxBytes, 4 * 21 * MiB, 'the 4th went out with 63 MiB unacknowledged');
    assert.ok(run.maxBytes > MAX_INFLIGHT_BYTES);
    assert.equal(run.acks.length, 6);
    assert.ok(run.acks.every((a) => a.outcome === 'delivered'));
    assert.equal(s.app.received.length, 6);
    assert.equal(s.conn.closedWith, undefined);
    assert.deepEqual(protocolErrors(s.agent), []);
  },
);

test(
  'a redelivery, after a reconnect, of an event still running holds one slot until its ack: never disconnected',
  AGENT_ONLY,
  async (t) => {
    const slow = gate();
    t.after(slow.open);
    const s = await setUp(t, {
      window: 2,
      channels: [GITHUB],
      routes: (url) => [{ channel: 'github', target: `${url}/hooks` }],
      respond: async (req, res) => {
        if (req.headers['x-postern-event-id'] === 'evt_slow') await slow.wait;
        res.end('ok');
      },
    });
    s.conn.sendDeliver(deliverFields('evt_slow', GITHUB));
    await s.app.waitFor(1);
    s.conn.ws.close(1000, 'relay restarting');
    await closedBy(s.conn, 'the first connection to end');

    const conn = await s.relay.connection(1);
    await conn.welcome(2, [GITHUB]);
    const ids = ['evt_slow', 'evt_fast', 'evt_next1', 'evt_next2', 'evt_next3'];
    const sending = sendLikeRelay(
      conn,
      2,
      GITHUB,
      ids.map((id) => ({ id, body: Buffer.from('{}') })),
    );
    // evt_slow (joined to the running attempt) holds one slot; the other carries the rest, one
    // at a time, until evt_slow's app answers.
    await s.app.waitFor(3);
    assert.deepEqual(eventIds(s.app), ['evt_slow', 'evt_fast', 'evt_next1']);
    slow.open();
    const run = await within(sending, 60_000, 'every delivery to be acknowledged');
    assert.equal(run.acks.length, 5);
    assert.ok(run.acks.every((a) => a.outcome === 'delivered'));
    assert.equal(run.maxInFlight, 2);
    assert.deepEqual(eventIds(s.app), [
      'evt_slow',
      'evt_fast',
      'evt_next1',
      'evt_next2',
      'evt_next3',
    ]);
    assert.equal(conn.closedWith, undefined);
    assert.deepEqual(protocolErrors(s.agent), []);
  },
);
