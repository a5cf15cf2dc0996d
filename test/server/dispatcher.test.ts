import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { Dispatcher, LEASE_MS, type AckFrame } from '../../server/dispatch/dispatcher.ts';
import type { Sink } from '../../server/dispatch/sessions.ts';
import { NO_ROUTE_RETRY_MS } from '../../server/dispatch/retry.ts';
import { EmbeddedStore, LAZY_FLUSH_MS } from '../../server/store/embedded.ts';
import type {
  ChannelRecord,
  EventPayload,
  EventStatus,
  EventSummary,
  Store,
} from '../../server/store/types.ts';
import { PosternError } from '../../shared/errors.ts';
import type { RelayFrame } from '../../shared/protocol.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;

const START = 1_700_000_000_000;

class FakeSink implements Sink {
  readonly id: string;
  readonly agentId: string;
  readonly window: number;
  readonly channels: readonly string[];
  open = true;
  readonly frames: DeliverFrame[] = [];

  constructor(id: string, window: number, channels: string[], agentId = `ag_${id}`) {
    this.id = id;
    this.agentId = agentId;
    this.window = window;
    this.channels = channels;
  }

  send(frame: DeliverFrame): void {
    this.frames.push(frame);
  }

  ids(): string[] {
    return this.frames.map((f) => f.eventId);
  }
}

function channelRecord(id: string, extra: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    id,
    name: `name-of-${id}`,
    verify: null,
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [20, 40] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 1_024,
    methods: null,
    paths: null,
    createdAt: START,
    ...extra,
  };
}

/**
 * Turns the event loop until `done()` holds (up to 10 s of real time): a commit to disk takes
 * real I/O time, longer on a busy machine. Timers are mocked, setImmediate is not.
 */
async function until(done: () => boolean): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!done() && performance.now() < deadline) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * The store as the dispatcher sees it, watched: how many of its calls are under way, so that a
 * test can wait until dispatch has nothing left to do; and a way to make a payload read fail.
 */
class WatchedStore {
  readonly view: Store;
  /** Calls made so far, and those whose promise has not settled. */
  calls = 0;
  /** Calls made so far by method. */
  readonly called = new Map<string, number>();
  pending = 0;
  /** Lazy settles under way, with the fake time they were made at (see `idle`). */
  readonly settles = new Set<{ at: number }>();
  /** Event ids whose next payload read fails. */
  readonly unreadable = new Set<string>();
  /** While set, settles and releases fail as with a database that is away. */
  away = false;
  /** Claims that go through but whose answer is lost (the connection reset after the commit). */
  lostClaimAnswers = 0;

  constructor(store: EmbeddedStore, clock: () => number) {
    const track = <T>(promise: Promise<T>): Promise<T> => {
      this.pending++;
      const done = () => {
        this.pending--;
      };
      promise.then(done, done);
      return promise;
    };
    this.view = new Proxy(store, {
      get: (target, prop, receiver) => {
        const value: unknown = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]): unknown => {
          this.calls++;
          this.called.set(String(prop), (this.called.get(String(prop)) ?? 0) + 1);
          if (prop === 'readPayload' && this.unreadable.delete(String(args[0]))) {
            return track(Promise.reject(new Error('injected read failure')));
          }
          if (this.away && (prop === 'settle' || prop === 'release')) {
            const err = new PosternError('ERR_UNAVAILABLE', 'injected: the database is away');
            return track(Promise.reject(err));
          }
          const result: unknown = Reflect.apply(value, target, args);
          if (!(result instanceof Promise)) return result;
          if (prop === 'claim' && this.lostClaimAnswers > 0) {
            this.lostClaimAnswers--;
            const lost = new PosternError('ERR_UNAVAILABLE', 'injected: connection reset');
            return track(result.then(() => Promise.reject(lost)));
          }
          if (prop !== 'settle') return track(result);
          // A lazy settle resolves when a commit takes it along, at the latest LAZY_FLUSH_MS of
          // fake time later: waiting for it before the clock got there would wait forever.
          const entry = { at: clock() };
          this.settles.add(entry);
          const done = () => this.settles.delete(entry);
          result.then(done, done);
          return result;
        };
      },
    });
  }

  /** Whether something the dispatcher asked the store for is still under way. */
  busy(now: number): boolean {
    if (this.pending > 0) return true;
    for (const s of this.settles) if (s.at + LAZY_FLUSH_MS <= now) return true;
    return false;
  }
}

/**
 * Waits until dispatch is idle: no store call under way, and none started for three turns of
 * the event loop in a row (a fill runs on setImmediate after a change). Throws after 10 s.
 */
async function idle(watched: WatchedStore, now: () => number): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (let quiet = 0; quiet < 3;) {
    if (performance.now() > deadline) throw new Error('dispatch did not come to rest in 10 s');
    const calls = watched.calls;
    await new Promise<void>((resolve) => setImmediate(resolve));
    quiet = !watched.busy(now()) && watched.calls === calls ? quiet + 1 : 0;
  }
}

interface HarnessOptions {
  /** The dispatcher's claim lease (default LEASE_MS). */
  leaseMs?: number;
}

interface Harness {
  store: EmbeddedStore;
  watched: WatchedStore;
  dispatcher: Dispatcher;
  /** Warnings and errors the dispatcher logged (JSON lines). */
  logs: string[];
  /** The fake clock the dispatcher reads. */
  now(): number;
  /**
   * Moves the fake clock and the mocked timers forward together, a third of a lease at most at a
   * time (the renewal interval), waiting for dispatch after each step: renewals then see the
   * time they run at, as they would in real time.
   */
  advance(ms: number): Promise<void>;
  /** Waits until dispatch has nothing left to do. */
  idle(): Promise<void>;
  /** Stores an event as ingress does (with its ordering key); the change feed tells dispatch. */
  add(channelId: string, orderKey?: string): Promise<string>;
  /**
   * Stores an event as ingress does with room in a session: reserved, appended claimed, handed
   * over (or appended and left to a claim when there is no room to reserve). Returns its id
   * and whether it was claimed in its append.
   */
  ingest(channelId: string): Promise<{ id: string; handedOff: boolean }>;
  ack(sink: Sink, eventId: string, extra?: Partial<AckFrame>): Promise<void>;
  get(id: string): Promise<EventSummary | undefined>;
  counts(): Promise<Record<EventStatus, number>>;
  dataDir: string;
}

async function harness(
  t: TestContext,
  channels: ChannelRecord[],
  opts: HarnessOptions = {},
): Promise<Harness> {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const leaseMs = opts.leaseMs ?? LEASE_MS;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-dispatch-'));
  const store = new EmbeddedStore({ dataDir });
  await store.open();
  let clock = START;
  const now = () => clock;
  const watched = new WatchedStore(store, now);
  const byId = new Map(channels.map((c) => [c.id, c]));
  const logs: string[] = [];
  const dispatcher = new Dispatcher({
    store: watched.view,
    logger: pino({ level: 'warn' }, { write: (line: string) => void logs.push(line) }),
    channel: (id) => byId.get(id),
    now,
    // Jitter factor 0.8 + 0.4 × 0.5 = exactly 1.
    random: () => 0.5,
    leaseMs,
  });
  dispatcher.start();
  t.after(async () => {
    dispatcher.stop();
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const rest = () => idle(watched, now);
  let seq = 0;
  /** The next event, as ingress captures it. */
  const next = (channelId: string, orderKey?: string): EventPayload => {
    seq++;
    return {
      id: `evt_${String(seq).padStart(4, '0')}`,
      channelId,
      receivedAt: clock,
      method: 'POST',
      path: `/p/${seq}`,
      query: `n=${seq}`,
      headers: [
        ['Content-Type', 'application/json'],
        ['X-Seq', String(seq)],
      ],
      originalUrl: `https://relay.example.com/h/${channelId}/p/${seq}?n=${seq}`,
      remoteAddress: '203.0.113.9',
      body: Buffer.from([0xff, seq & 0xff, 0x00]),
      ...(orderKey === undefined ? {} : { orderKey }),
    };
  };
  return {
    store,
    watched,
    dispatcher,
    logs,
    dataDir,
    now,
    idle: rest,
    async advance(ms) {
      for (let left = ms; left > 0;) {
        const step = Math.min(left, Math.floor(leaseMs / 3));
        left -= step;
        clock += step;
        t.mock.timers.tick(step);
        await rest();
      }
    },
    async add(channelId, orderKey) {
      const payload = next(channelId, orderKey);
      await store.appendEvent(payload);
      await rest();
      return payload.id;
    },
    async ingest(channelId) {
      const payload = next(channelId);
      const room = dispatcher.reserve(channelId);
      let handedOff = false;
      if (room) {
        const appended = await store.appendClaimed(payload, room.claim);
        handedOff = dispatcher.handOff(room, appended, payload);
      } else {
        await store.appendEvent(payload);
      }
      await rest();
      return { id: payload.id, handedOff };
    },
    async ack(sink, eventId, extra = {}) {
      dispatcher.ack(sink, {
        type: 'ack',
        eventId,
        outcome: 'delivered',
        status: 200,
        durationMs: 5,
        ...extra,
      });
      await rest();
    },
    get: (id) => store.getEvent(id),
    counts: () => store.countByStatus(),
  };
}

const CH = 'ch_main';

test('an event with no sink waits, using no attempt, and goes out when a sink attaches', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const id = await h.add(CH);
  await h.advance(3_600_000);
  const waiting = await h.get(id);
  assert.equal(waiting?.status, 'queued');
  assert.equal(waiting?.attemptCount, 0);
  assert.deepEqual(waiting?.attempts, []);

  const other = new FakeSink('s0', 10, ['ch_other']);
  h.dispatcher.attach(other);
  await h.idle();
  assert.equal(other.frames.length, 0);

  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  await h.idle();
  assert.equal(sink.frames.length, 1);
  assert.deepEqual(sink.frames[0], {
    type: 'deliver',
    eventId: id,
    channelId: CH,
    channelName: `name-of-${CH}`,
    attempt: 1,
    method: 'POST',
    path: '/p/1',
    query: 'n=1',
    headers: [
      ['Content-Type', 'application/json'],
      ['X-Seq', '1'],
    ],
    originalUrl: `https://relay.example.com/h/${CH}/p/1?n=1`,
    remoteAddress: '203.0.113.9',
    receivedAt: START,
    wantResponse: false,
    skipRoutes: [],
    replay: 0,
    body: Buffer.from([0xff, 1, 0x00]),
  });
  assert.equal((await h.get(id))?.status, 'delivering');
  assert.equal(h.dispatcher.inFlightCount(sink), 1);
});

test('a sink that is not open is never picked', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const closed = new FakeSink('s1', 10, [CH]);
  closed.open = false;
  h.dispatcher.attach(closed);
  const id = await h.add(CH);
  assert.equal(closed.frames.length, 0);
  assert.equal((await h.get(id))?.status, 'queued');
});

test('an outcome the store cannot take (the database away) is recorded once it is back, not delivered again', async (t) => {
  const h = await harness(t, [channelRecord('ch_1')]);
  const sink = new FakeSink('s1', 4, ['ch_1']);
  h.dispatcher.attach(sink);
  const id = await h.add('ch_1');
  assert.deepEqual(sink.ids(), [id]);
  h.watched.away = true;
  await h.ack(sink, id);
  await h.advance(5_000);
  assert.equal((await h.get(id))?.status, 'delivering', 'still claimed by this relay');
  await h.advance(LEASE_MS * 2);
  assert.equal((await h.get(id))?.status, 'delivering', 'its claim is renewed meanwhile');
  assert.ok(h.logs.some((line) => line.includes('will try again')));
  h.watched.away = false;
  await h.advance(2_000);
  const event = await h.get(id);
  assert.equal(event?.status, 'delivered');
  assert.equal(event?.attemptCount, 1);
  assert.deepEqual(sink.ids(), [id], 'delivered once');
});

test('a session that ends while the database is away gives its events back once it is back', async (t) => {
  const h = await harness(t, [channelRecord('ch_1')]);
  const first = new FakeSink('s1', 4, ['ch_1']);
  h.dispatcher.attach(first);
  const id = await h.add('ch_1');
  h.watched.away = true;
  first.open = false;
  h.dispatcher.detach(first);
  await h.idle();
  const second = new FakeSink('s2', 4, ['ch_1']);
  h.dispatcher.attach(second);
  await h.advance(5_000);
  assert.deepEqual(second.ids(), [], 'still claimed: not offered again yet');
  h.watched.away = false;
  await h.advance(2_000);
  assert.deepEqual(second.ids(), [id], 'released, then offered to the session there is');
});

test('the window is respected: window 2, 5 events, 2 sent until acks arrive', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 2, [CH]);
  h.dispatcher.attach(sink);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await h.add(CH));
  assert.deepEqual(sink.ids(), ids.slice(0, 2));
  assert.equal(h.dispatcher.inFlightCount(sink), 2);
  assert.deepEqual(await h.counts(), {
    queued: 3,
    delivering: 2,
    delivered: 0,
    failed: 0,
    rejected: 0,
    filtered: 0,
  });

  await h.ack(sink, ids[0]!);
  assert.deepEqual(sink.ids(), ids.slice(0, 3));
  await h.ack(sink, ids[1]!);
  await h.ack(sink, ids[2]!);
  assert.deepEqual(sink.ids(), ids);
  assert.equal(h.dispatcher.inFlightCount(sink), 2);
  await h.ack(sink, ids[3]!);
  await h.ack(sink, ids[4]!);
  assert.equal(sink.frames.length, 5);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
  assert.equal((await h.counts()).delivered, 5);
});

test('ack delivered: status delivered, attemptCount 1, the attempt recorded', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await h.advance(1_234);
  await h.ack(sink, id, { status: 204, durationMs: 17 });
  const summary = await h.get(id);
  assert.equal(summary?.status, 'delivered');
  assert.equal(summary?.attemptCount, 1);
  assert.equal(summary?.nextAttemptAt, 0);
  assert.deepEqual(summary?.attempts, [
    {
      at: START + 1_234,
      agentId: 'ag_s1',
      outcome: 'delivered',
      status: 204,
      durationMs: 17,
      error: null,
    },
  ]);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
  // Nothing is ever sent again.
  await h.advance(10_000_000);
  assert.equal(sink.frames.length, 1);
});

test('ack failed: queued with nextAttemptAt = now + delay, re-sent when due, then failed', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [20, 40] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);

  await h.ack(sink, id, { outcome: 'failed', status: 500, error: 'app answered 500' });
  let summary = await h.get(id);
  assert.equal(summary?.status, 'queued');
  assert.equal(summary?.attemptCount, 1);
  assert.equal(summary?.nextAttemptAt, START + 20);
  assert.deepEqual(summary?.attempts, [
    {
      at: START,
      agentId: 'ag_s1',
      outcome: 'failed',
      status: 500,
      durationMs: 5,
      error: 'app answered 500',
    },
  ]);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);

  await h.advance(19);
  assert.equal(sink.frames.length, 1);
  await h.advance(1);
  assert.equal(sink.frames.length, 2);
  assert.equal(sink.frames[1]?.eventId, id);
  assert.equal(sink.frames[1]?.attempt, 2);
  assert.equal((await h.get(id))?.status, 'delivering');

  await h.ack(sink, id, { outcome: 'failed', status: 502 });
  summary = await h.get(id);
  assert.equal(summary?.attemptCount, 2);
  assert.equal(summary?.nextAttemptAt, START + 20 + 40);
  await h.advance(39);
  assert.equal(sink.frames.length, 2);
  await h.advance(1);
  assert.equal(sink.frames.length, 3);
  assert.equal(sink.frames[2]?.attempt, 3);

  // The third failure is past the last delay: the event is failed for good.
  await h.ack(sink, id, { outcome: 'failed', error: 'app refused the connection' });
  summary = await h.get(id);
  assert.equal(summary?.status, 'failed');
  assert.equal(summary?.attemptCount, 3);
  assert.equal(summary?.nextAttemptAt, 0);
  assert.equal(summary?.attempts.length, 3);
  await h.advance(10_000_000);
  assert.equal(sink.frames.length, 3);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
});

test('a failed event waiting for its retry does not hold back the events behind it', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [1_000] } })]);
  const sink = new FakeSink('s1', 1, [CH]);
  h.dispatcher.attach(sink);
  const a = await h.add(CH);
  const b = await h.add(CH);
  assert.deepEqual(sink.ids(), [a]);
  await h.ack(sink, a, { outcome: 'failed', status: 500 });
  assert.deepEqual(sink.ids(), [a, b]);
  await h.ack(sink, b);
  await h.advance(1_000);
  assert.deepEqual(sink.ids(), [a, b, a]);
});

test('Retry-After (ack.retryAfterMs) replaces the scheduled delay', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [20, 40] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await h.ack(sink, id, { outcome: 'failed', status: 503, retryAfterMs: 7_000 });
  assert.equal((await h.get(id))?.nextAttemptAt, START + 7_000);
  await h.advance(20);
  assert.equal(sink.frames.length, 1);
  await h.advance(6_979);
  assert.equal(sink.frames.length, 1);
  await h.advance(1);
  assert.equal(sink.frames.length, 2);
  assert.equal(sink.frames[1]?.attempt, 2);
});

test('no_route: stays queued, attemptCount unchanged, offered again later', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await h.ack(sink, id, { outcome: 'no_route', status: undefined, error: 'no route' });
  const summary = await h.get(id);
  // An empty retry schedule would make a failure final; no_route is not a failure.
  assert.equal(summary?.status, 'queued');
  assert.equal(summary?.attemptCount, 0);
  assert.equal(summary?.nextAttemptAt, START + NO_ROUTE_RETRY_MS);
  assert.equal(summary?.attempts.length, 1);
  assert.equal(summary?.attempts[0]?.outcome, 'no_route');
  await h.advance(NO_ROUTE_RETRY_MS - 1);
  assert.equal(sink.frames.length, 1);
  await h.advance(1);
  assert.equal(sink.frames.length, 2);
  assert.equal(sink.frames[1]?.eventId, id);
  assert.equal(sink.frames[1]?.attempt, 1);
});

test('no_route: a new session of the channel makes the parked event due at once', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const before = new FakeSink('s1', 10, [CH], 'ag_one');
  h.dispatcher.attach(before);
  const id = await h.add(CH);
  const other = await h.add(CH);
  await h.ack(before, id, { outcome: 'no_route', status: undefined, error: 'no route' });
  await h.ack(before, other, { outcome: 'failed', status: 500, error: 'app answered 500' });
  before.open = false;
  h.dispatcher.detach(before);
  await h.idle();
  assert.equal((await h.get(id))?.nextAttemptAt, START + NO_ROUTE_RETRY_MS);

  // The agent comes back (with the route now): no time passes, the event goes.
  const after = new FakeSink('s2', 10, [CH], 'ag_one');
  h.dispatcher.attach(after);
  await until(() => after.frames.length > 0);
  await h.idle();
  assert.deepEqual(after.ids(), [id]);
  assert.equal(after.frames[0]?.attempt, 1);
  assert.equal(h.dispatcher.deliveringBy(id), 'ag_one');
  // The failed one keeps its retry time: a new session is no reason to retry it early.
  assert.equal((await h.get(other))?.nextAttemptAt, START + 20);
  assert.equal(h.now(), START);
  await h.ack(after, id);
  assert.equal(h.dispatcher.deliveringBy(id), undefined);
  assert.equal((await h.get(id))?.status, 'delivered');
});

test('no_route from one agent: another connected agent of the channel gets it at once', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  // The one without the route has the most room: it is picked first.
  const without = new FakeSink('s1', 10, [CH], 'ag_without');
  const withRoute = new FakeSink('s2', 5, [CH], 'ag_with');
  h.dispatcher.attach(without);
  h.dispatcher.attach(withRoute);
  const first = await h.add(CH);
  assert.deepEqual(without.ids(), [first]);
  await h.ack(without, first, { outcome: 'no_route', status: undefined, error: 'no route' });
  // Once its outcome is written (a lazy settle rides with the next commit, or LAZY_FLUSH_MS).
  await h.advance(LAZY_FLUSH_MS);
  assert.deepEqual(withRoute.ids(), [first]);
  assert.equal(withRoute.frames[0]?.attempt, 1);
  // The next ones skip the session that has no route, though it has more room.
  const second = await h.add(CH);
  assert.deepEqual(withRoute.ids(), [first, second]);
  assert.deepEqual(without.ids(), [first]);
  assert.ok(h.now() < START + NO_ROUTE_RETRY_MS);

  // Both without a route: parked for NO_ROUTE_RETRY_MS, not bounced between them.
  await h.ack(withRoute, first, { outcome: 'no_route', status: undefined, error: 'no route' });
  const at = h.now();
  await h.advance(LAZY_FLUSH_MS);
  assert.equal((await h.get(first))?.nextAttemptAt, at + NO_ROUTE_RETRY_MS);
  assert.equal(without.frames.length + withRoute.frames.length, 3);
});

test('detach returns in-flight events to the queue; another sink gets them, same ids', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const first = new FakeSink('s1', 3, [CH], 'ag_one');
  h.dispatcher.attach(first);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await h.add(CH));
  assert.deepEqual(first.ids(), ids.slice(0, 3));

  first.open = false;
  h.dispatcher.detach(first);
  await h.idle();
  for (const id of ids) {
    assert.equal((await h.get(id))?.status, 'queued');
    assert.equal((await h.get(id))?.attemptCount, 0);
  }
  assert.equal(h.dispatcher.inFlightCount(first), 0);

  const second = new FakeSink('s2', 10, [CH], 'ag_two');
  h.dispatcher.attach(second);
  await h.idle();
  // Handed-back events go first, in their original order.
  assert.deepEqual(second.ids(), ids);
  assert.deepEqual(
    second.frames.map((f) => f.attempt),
    [1, 1, 1, 1, 1],
  );
  // A late ack from the old session is ignored.
  await h.ack(first, ids[0]!);
  assert.equal((await h.get(ids[0]!))?.status, 'delivering');
  for (const id of ids) await h.ack(second, id);
  assert.equal((await h.counts()).delivered, 5);
  assert.equal((await h.get(ids[0]!))?.attempts[0]?.agentId, 'ag_two');
});

test('two sinks on a channel: each event goes to exactly one; a detach hands over', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const a = new FakeSink('sa', 2, [CH]);
  const b = new FakeSink('sb', 2, [CH]);
  h.dispatcher.attach(a);
  h.dispatcher.attach(b);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await h.add(CH));
  assert.equal(a.frames.length, 2);
  assert.equal(b.frames.length, 2);
  assert.equal(new Set([...a.ids(), ...b.ids()]).size, 4);

  a.open = false;
  h.dispatcher.detach(a);
  await h.idle();
  // b is full: nothing moves yet.
  assert.equal(b.frames.length, 2);
  for (const id of b.ids().slice(0, 2)) await h.ack(b, id);
  for (;;) {
    const pending: string[] = [];
    for (const id of b.ids()) if ((await h.get(id))?.status === 'delivering') pending.push(id);
    if (pending.length === 0) break;
    for (const id of pending) await h.ack(b, id);
  }
  assert.deepEqual(new Set(b.ids()), new Set(ids));
  assert.equal(b.frames.length, 6);
  assert.equal((await h.counts()).delivered, 6);
});

test('ordered channel: one in flight at a time, in arrival order', async (t) => {
  const ordered = 'ch_ordered';
  const h = await harness(t, [
    channelRecord(ordered, { ordered: true, retry: { delaysMs: [50] } }),
  ]);
  const sink = new FakeSink('s1', 10, [ordered]);
  h.dispatcher.attach(sink);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await h.add(ordered));
  assert.deepEqual(sink.ids(), [ids[0]]);
  await h.ack(sink, ids[0]!);
  assert.deepEqual(sink.ids(), ids.slice(0, 2));
  await h.ack(sink, ids[1]!);
  await h.ack(sink, ids[2]!);
  await h.ack(sink, ids[3]!);
  assert.deepEqual(sink.ids(), ids);
  assert.equal((await h.counts()).delivered, 4);
});

test('ordered channel: a failing head blocks those behind it until it is done', async (t) => {
  const ordered = 'ch_ordered';
  const h = await harness(t, [
    channelRecord(ordered, { ordered: true, retry: { delaysMs: [50] } }),
  ]);
  const sink = new FakeSink('s1', 10, [ordered]);
  h.dispatcher.attach(sink);
  const [a, b, c] = [await h.add(ordered), await h.add(ordered), await h.add(ordered)];
  assert.deepEqual(sink.ids(), [a]);
  await h.ack(sink, a!);
  assert.deepEqual(sink.ids(), [a, b]);

  await h.ack(sink, b!, { outcome: 'failed', status: 500 });
  // b waits 50 ms for its retry; c must not overtake it.
  assert.deepEqual(sink.ids(), [a, b]);
  assert.equal((await h.get(c!))?.status, 'queued');
  await h.advance(49);
  assert.deepEqual(sink.ids(), [a, b]);
  await h.advance(1);
  assert.deepEqual(sink.ids(), [a, b, b]);
  assert.equal(sink.frames[2]?.attempt, 2);

  // The last failure makes b failed; c may go now.
  await h.ack(sink, b!, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(b!))?.status, 'failed');
  assert.deepEqual(sink.ids(), [a, b, b, c]);
  await h.ack(sink, c!);
  assert.equal((await h.get(c!))?.status, 'delivered');
});

test('ordered channel: a detached head goes out again before the rest', async (t) => {
  const ordered = 'ch_ordered';
  const h = await harness(t, [channelRecord(ordered, { ordered: true })]);
  const first = new FakeSink('s1', 10, [ordered]);
  h.dispatcher.attach(first);
  const ids = [await h.add(ordered), await h.add(ordered), await h.add(ordered)];
  assert.deepEqual(first.ids(), [ids[0]]);
  first.open = false;
  h.dispatcher.detach(first);
  const second = new FakeSink('s2', 10, [ordered]);
  h.dispatcher.attach(second);
  await h.idle();
  assert.deepEqual(second.ids(), [ids[0]]);
  await h.ack(second, ids[0]!);
  await h.ack(second, ids[1]!);
  assert.deepEqual(second.ids(), ids);
});

test('replay of a failed event: queued, attemptCount 0, re-sent with the same id', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [] } })]);
  const first = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(first);
  const id = await h.add(CH);
  await h.ack(first, id, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(id))?.status, 'failed');
  assert.equal((await h.get(id))?.attemptCount, 1);
  first.open = false;
  h.dispatcher.detach(first);

  await h.advance(5_000);
  const replayed = await h.dispatcher.replay(id);
  assert.equal(replayed.id, id);
  assert.equal(replayed.status, 'queued');
  assert.equal(replayed.attemptCount, 0);
  assert.equal(replayed.nextAttemptAt, 0);
  assert.deepEqual(await h.counts(), {
    queued: 1,
    delivering: 0,
    delivered: 0,
    failed: 0,
    rejected: 0,
    filtered: 0,
  });

  const second = new FakeSink('s2', 10, [CH]);
  h.dispatcher.attach(second);
  await h.idle();
  assert.equal(second.frames.length, 1);
  assert.equal(second.frames[0]?.eventId, id);
  assert.equal(second.frames[0]?.attempt, 1);
  assert.equal(second.frames[0]?.replay, 1, 'the agent is told it is a replay');
  assert.deepEqual(second.frames[0]?.body, first.frames[0]?.body);

  await h.ack(second, id);
  const summary = await h.get(id);
  assert.equal(summary?.status, 'delivered');
  assert.equal(summary?.attemptCount, 1);
  assert.deepEqual(
    summary?.attempts.map((a) => a.outcome),
    ['failed', 'delivered'],
  );
});

test('replay with a sink connected sends the event at once', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await h.ack(sink, id, { outcome: 'failed', status: 500 });
  await h.dispatcher.replay(id);
  await h.idle();
  assert.deepEqual(sink.ids(), [id, id]);
  assert.deepEqual(
    sink.frames.map((f) => f.attempt),
    [1, 1],
  );
  assert.equal((await h.get(id))?.status, 'delivering');
});

test('replay of an event in flight is refused (409) and changes nothing; unknown and rejected events are refused', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await assert.rejects(h.dispatcher.replay(id), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_CONFLICT');
    assert.equal(err.status, 409);
    return true;
  });
  await h.idle();
  const unchanged = await h.get(id);
  assert.equal(unchanged?.status, 'delivering');
  assert.equal(unchanged?.replays, 0);
  assert.equal(sink.frames.length, 1);
  // The claim still holds: the agent's ack is recorded.
  await h.ack(sink, id);
  assert.equal((await h.get(id))?.status, 'delivered');

  await assert.rejects(h.dispatcher.replay('evt_nope'), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_NOT_FOUND');
    assert.equal(err.status, 404);
    return true;
  });

  // Stored as ingress stores a request refused at the edge: metadata only, never queued.
  const rejected = await h.store.appendEvent({
    id: 'evt_rejected',
    channelId: CH,
    receivedAt: START,
    method: 'POST',
    path: '',
    query: '',
    headers: [],
    originalUrl: `https://relay.example.com/h/${CH}`,
    remoteAddress: '203.0.113.9',
    body: Buffer.alloc(0),
    rejected: { reason: 'bad signature', size: 12 },
  });
  await h.idle();
  assert.equal(rejected.status, 'rejected');
  await assert.rejects(h.dispatcher.replay(rejected.id), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_CONFLICT');
    assert.equal(err.status, 409);
    return true;
  });
  assert.equal(sink.frames.length, 1);
});

test('replay of an event waiting for a retry sends it now; a new failure keeps its new time', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [10_000, 10_000] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  // The app asked for a retry in 100 ms.
  await h.ack(sink, id, { outcome: 'failed', status: 503, retryAfterMs: 100 });
  assert.equal((await h.get(id))?.nextAttemptAt, START + 100);

  await h.advance(10);
  await h.dispatcher.replay(id);
  await h.idle();
  assert.equal(sink.frames.length, 2);
  assert.equal(sink.frames[1]?.attempt, 1);

  // This time it fails without Retry-After: next attempt after the first delay, 10 s.
  await h.ack(sink, id, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(id))?.nextAttemptAt, START + 10 + 10_000);
  // The old 100 ms wake-up must not send it early.
  await h.advance(90);
  assert.equal(sink.frames.length, 2, 'sent again at the old retry time');
  await h.advance(9_909);
  assert.equal(sink.frames.length, 2);
  await h.advance(1);
  assert.equal(sink.frames.length, 3);
});

test('an ack for an event not in flight on that session is ignored', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const a = new FakeSink('sa', 10, [CH]);
  const b = new FakeSink('sb', 10, ['ch_elsewhere']);
  h.dispatcher.attach(a);
  h.dispatcher.attach(b);
  const id = await h.add(CH);
  assert.deepEqual(a.ids(), [id]);

  // Unknown event id.
  await h.ack(a, 'evt_unknown');
  // The right event, but from another session.
  await h.ack(b, id, { outcome: 'failed' });
  let summary = await h.get(id);
  assert.equal(summary?.status, 'delivering');
  assert.equal(summary?.attemptCount, 0);
  assert.deepEqual(summary?.attempts, []);
  assert.equal(h.dispatcher.inFlightCount(a), 1);

  await h.ack(a, id);
  // A duplicate ack counts nothing more.
  await h.ack(a, id, { outcome: 'failed' });
  summary = await h.get(id);
  assert.equal(summary?.status, 'delivered');
  assert.equal(summary?.attemptCount, 1);
  assert.equal(summary?.attempts.length, 1);
  assert.equal(a.frames.length, 1);
});

test('start() picks up pending events left in the store by a previous run', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-dispatch-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const before = new EmbeddedStore({ dataDir });
  await before.open();
  const ids: string[] = [];
  for (let i = 1; i <= 4; i++) {
    const s = await before.appendEvent({
      id: `evt_${i}`,
      channelId: CH,
      receivedAt: START + i,
      method: 'PUT',
      path: '',
      query: '',
      headers: [],
      originalUrl: `https://relay.example.com/h/${CH}`,
      remoteAddress: '203.0.113.9',
      body: Buffer.from(`body ${i}`),
    });
    ids.push(s.id);
  }
  await before.updateEvent('evt_2', { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  await before.updateEvent('evt_3', { status: 'delivering', attemptCount: 2, nextAttemptAt: 0 });
  await before.close();

  const store = new EmbeddedStore({ dataDir });
  await store.open();
  const dispatcher = new Dispatcher({
    store,
    logger: pino({ level: 'silent' }),
    channel: (id) => (id === CH ? channelRecord(CH) : undefined),
    now: () => START + 100,
    random: () => 0.5,
  });
  t.after(async () => {
    dispatcher.stop();
    await store.close();
  });
  dispatcher.start();
  const sink = new FakeSink('s1', 10, [CH]);
  dispatcher.attach(sink);
  // Bodies are read from disk here; wait for all three.
  await until(() => sink.frames.length >= 3);
  assert.deepEqual(sink.ids(), ['evt_1', 'evt_3', 'evt_4']);
  assert.deepEqual(
    sink.frames.map((f) => [f.attempt, f.method, f.body.toString()]),
    [
      [1, 'PUT', 'body 1'],
      [3, 'PUT', 'body 3'],
      [1, 'PUT', 'body 4'],
    ],
  );
});

// ---------------------------------------------------------------------------------------------
// Fairness between the channels of one session

test('room freed by acks goes to the session’s channels in turn: a backlog past the window starves none', async (t) => {
  const [A, B, C] = ['ch_a', 'ch_b', 'ch_c'];
  const h = await harness(t, [channelRecord(A), channelRecord(B), channelRecord(C)]);
  const sink = new FakeSink('s1', 4, [A, B, C]);
  h.dispatcher.attach(sink);
  const a: string[] = [];
  for (let i = 0; i < 10; i++) a.push(await h.add(A));
  assert.deepEqual(sink.ids(), a.slice(0, 4), 'the window is full of A');
  const b = [await h.add(B), await h.add(B), await h.add(B)];
  const c = [await h.add(C), await h.add(C)];
  assert.equal(sink.frames.length, 4, 'no room: B and C wait');

  const name = (id: string) =>
    a.includes(id)
      ? `a${a.indexOf(id)}`
      : b.includes(id)
        ? `b${b.indexOf(id)}`
        : `c${c.indexOf(id)}`;
  const sentAfterAck = async (id: string) => {
    const before = sink.frames.length;
    await h.ack(sink, id);
    assert.equal(h.dispatcher.inFlightCount(sink), 4, `window full again after the ack of ${id}`);
    return sink.ids().slice(before).map(name);
  };
  // Each ack frees one slot; it goes to the next channel with work after the one served last.
  const order: string[][] = [];
  for (const id of [a[0]!, a[1]!, a[2]!, a[3]!, b[0]!, c[0]!, a[4]!, b[1]!, c[1]!]) {
    order.push(await sentAfterAck(id));
  }
  assert.deepEqual(order, [
    ['b0'],
    ['c0'],
    ['a4'],
    ['b1'],
    ['c1'],
    ['a5'],
    ['b2'],
    ['a6'], // C has nothing left: its turn is skipped
    ['a7'], // B and C have nothing left
  ]);
  for (const id of [a[5]!, b[2]!, a[6]!, a[7]!, a[8]!, a[9]!]) await h.ack(sink, id);
  assert.equal(sink.frames.length, 15, '15 events, 15 deliveries');
  assert.equal(new Set(sink.ids()).size, 15, 'each once');
  assert.equal((await h.counts()).delivered, 15);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
});

test('a fast channel keeps the room it frees while a slow one holds the rest of the window', async (t) => {
  const [SLOW, FAST] = ['ch_slow', 'ch_fast'];
  const h = await harness(t, [channelRecord(SLOW), channelRecord(FAST)]);
  const slow: string[] = [];
  const fast: string[] = [];
  for (let i = 0; i < 10; i++) {
    slow.push(await h.add(SLOW));
    fast.push(await h.add(FAST));
  }
  const sink = new FakeSink('s1', 4, [SLOW, FAST]);
  h.dispatcher.attach(sink);
  await h.idle();
  // The window is shared: two each (the order within one fill is the claims').
  const of = (ids: string[]) => sink.ids().filter((id) => ids.includes(id));
  assert.deepEqual([of(slow), of(fast)], [slow.slice(0, 2), fast.slice(0, 2)], 'two each');
  // The slow channel's app never answers; the fast one answers every delivery at once.
  for (let i = 0; i < 8; i++) await h.ack(sink, fast[i]!);
  assert.deepEqual(
    sink.ids().slice(4),
    fast.slice(2),
    'every fast event went through the room the fast channel freed',
  );
  assert.equal(h.dispatcher.inFlightCount(sink), 4, 'two slow, two fast');
  // Once the fast channel has nothing left, the slow one gets the room.
  await h.ack(sink, fast[8]!);
  await h.ack(sink, fast[9]!);
  assert.deepEqual(sink.ids().slice(12), [slow[2], slow[3]]);
  await h.ack(sink, slow[0]!);
  assert.deepEqual(sink.ids().slice(14), [slow[4]]);
  assert.equal((await h.counts()).delivered, 11);
});

test('window 1, two channels with a backlog: deliveries alternate', async (t) => {
  const [A, B] = ['ch_a', 'ch_b'];
  const h = await harness(t, [channelRecord(A), channelRecord(B)]);
  const sink = new FakeSink('s1', 1, [A, B]);
  h.dispatcher.attach(sink);
  const a: string[] = [];
  const b: string[] = [];
  for (let i = 0; i < 5; i++) a.push(await h.add(A));
  for (let i = 0; i < 5; i++) b.push(await h.add(B));
  for (let i = 0; i < 10; i++) await h.ack(sink, sink.frames.at(-1)!.eventId);
  assert.deepEqual(
    sink.frames.map((f) => f.channelId),
    [A, B, A, B, A, B, A, B, A, B],
  );
  assert.deepEqual(sink.ids(), [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4]]);
  assert.equal((await h.counts()).delivered, 10);
});

test('a session attaching to a backlog on several channels takes from each in turn', async (t) => {
  const [A, B] = ['ch_a', 'ch_b'];
  const ordered = 'ch_ordered';
  const h = await harness(t, [
    channelRecord(A),
    channelRecord(B),
    channelRecord(ordered, { ordered: true }),
  ]);
  const a: string[] = [];
  const b: string[] = [];
  const o: string[] = [];
  for (let i = 0; i < 6; i++) {
    a.push(await h.add(A));
    b.push(await h.add(B));
    o.push(await h.add(ordered));
  }
  const sink = new FakeSink('s1', 5, [A, B, ordered]);
  h.dispatcher.attach(sink);
  await h.idle();
  // The window is shared between the channels; the ordered channel has one event out at a time,
  // so the others take its share.
  const of = (ids: string[]) => sink.ids().filter((id) => ids.includes(id));
  assert.deepEqual([of(a), of(b), of(o)], [a.slice(0, 2), b.slice(0, 2), o.slice(0, 1)]);
  assert.equal(sink.frames.length, 5);
  await h.ack(sink, o[0]!);
  assert.deepEqual(sink.ids().slice(5), [o[1]], 'the ordered channel’s turn came next');
  await h.ack(sink, a[0]!);
  assert.deepEqual(sink.ids().slice(6), [a[2]]);
});

test('window 5, four channels with a backlog: every channel gets one before any gets a second', async (t) => {
  const channels = ['ch_a', 'ch_b', 'ch_c', 'ch_d'];
  const h = await harness(
    t,
    channels.map((c) => channelRecord(c)),
  );
  for (let i = 0; i < 3; i++) for (const c of channels) await h.add(c);
  const sink = new FakeSink('s1', 5, channels);
  h.dispatcher.attach(sink);
  await h.idle();
  assert.equal(sink.frames.length, 5);
  const perChannel = channels.map((c) => sink.frames.filter((f) => f.channelId === c).length);
  assert.deepEqual(
    [...perChannel].sort(),
    [1, 1, 1, 2],
    `in flight per channel: ${perChannel.join(', ')}`,
  );
});

test('a fill claims no more than the room in the window: nothing is claimed only to be handed back', async (t) => {
  const channels = ['ch_a', 'ch_b', 'ch_c'];
  const h = await harness(
    t,
    channels.map((c) => channelRecord(c)),
  );
  for (let i = 0; i < 3; i++) for (const c of channels) await h.add(c);
  // What the store's change feed says of every claim and every release.
  const claimed: string[] = [];
  const handedBack: string[] = [];
  const unsubscribe = h.store.subscribe((change) => {
    if (change.type !== 'event') return;
    const e = change.event;
    if (e.status === 'delivering') claimed.push(e.id);
    else if (e.status === 'queued' && e.attempts.length === 0) handedBack.push(e.id);
  });
  t.after(unsubscribe);
  const sink = new FakeSink('s1', 5, channels);
  h.dispatcher.attach(sink);
  await h.idle();
  assert.equal(sink.frames.length, 5);
  assert.deepEqual(handedBack, [], 'claimed and released without an attempt');
  assert.deepEqual(claimed.sort(), sink.ids().sort(), 'one claim per delivery');
});

// ---------------------------------------------------------------------------------------------
// Settings changed while events are pending

test('unordered → ordered: an event waiting for its retry and the queued ones go one at a time, in arrival order', async (t) => {
  const record = channelRecord(CH, { retry: { delaysMs: [20, 40] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 2, [CH]);
  h.dispatcher.attach(sink);
  const [x, e1, e2, e3, e4] = [
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
  ];
  assert.deepEqual(sink.ids(), [x, e1]);
  await h.ack(sink, x!, { outcome: 'failed', status: 500 });
  // x waits 20 ms for its retry; e1 and e2 are in flight; e3 and e4 are queued.
  assert.deepEqual(sink.ids(), [x, e1, e2]);

  record.ordered = true;
  h.dispatcher.channelChanged(CH);
  h.dispatcher.channelChanged(CH); // twice changes nothing more
  await h.idle();
  assert.equal(sink.frames.length, 3, 'e1 and e2, sent before the change, hold the lane');
  await h.ack(sink, e1!);
  assert.equal(sink.frames.length, 3, 'e2 still holds the lane');
  await h.ack(sink, e2!);
  assert.equal(sink.frames.length, 3, 'x is first in the lane and not due yet: nothing goes');
  await h.advance(20);
  assert.deepEqual(sink.ids().slice(3), [x], 'x, on its own time');
  assert.equal(sink.frames[3]?.attempt, 2);
  await h.ack(sink, x!, { outcome: 'failed', status: 500 });
  await h.advance(39);
  assert.equal(sink.frames.length, 4, 'e3 does not overtake x waiting for its retry');
  await h.advance(1);
  assert.deepEqual(sink.ids().slice(4), [x]);
  await h.ack(sink, x!);
  assert.deepEqual(sink.ids().slice(5), [e3], 'one at a time, though the window has room for 2');
  await h.ack(sink, e3!);
  assert.deepEqual(sink.ids().slice(6), [e4]);
  await h.ack(sink, e4!);
  assert.deepEqual(sink.ids(), [x, e1, e2, x, x, e3, e4]);
  assert.equal((await h.counts()).delivered, 5);
  assert.equal((await h.get(x!))?.attemptCount, 3);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
});

test('unordered → ordered: an event in flight at the change that fails is retried in its arrival place', async (t) => {
  const record = channelRecord(CH, { retry: { delaysMs: [20] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 3, [CH]);
  h.dispatcher.attach(sink);
  const [a, b, c, d, e] = [
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
    await h.add(CH),
  ];
  await h.ack(sink, a!, { outcome: 'failed', status: 500 });
  assert.deepEqual(sink.ids(), [a, b, c, d], 'a waits for its retry; b, c, d in flight; e queued');

  record.ordered = true;
  h.dispatcher.channelChanged(CH);
  await h.ack(sink, c!, { outcome: 'failed', status: 500 });
  await h.ack(sink, b!);
  assert.equal(sink.frames.length, 4, 'd, sent before the change, still holds the lane');
  await h.ack(sink, d!);
  assert.equal(sink.frames.length, 4, 'a is first and not due yet');
  await h.advance(20);
  assert.deepEqual(sink.ids().slice(4), [a]);
  await h.ack(sink, a!);
  assert.deepEqual(sink.ids().slice(5), [c], 'c, retried in its place: after a, before e');
  await h.ack(sink, c!);
  assert.deepEqual(sink.ids().slice(6), [e]);
  await h.ack(sink, e!);
  assert.deepEqual(sink.ids(), [a, b, c, d, a, c, e]);
  assert.equal((await h.counts()).delivered, 5);
});

test('ordered → unordered: the events queued behind the head in flight go at once, in parallel', async (t) => {
  const record = channelRecord(CH, { ordered: true, retry: { delaysMs: [20] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await h.add(CH));
  const [head, ...behind] = ids;
  assert.deepEqual(sink.ids(), [head]);

  record.ordered = false;
  h.dispatcher.channelChanged(CH);
  await h.idle();
  assert.deepEqual(sink.ids(), ids, 'the three behind the head go without waiting for it');
  assert.equal(h.dispatcher.inFlightCount(sink), 4);
  // The head fails: it is placed by the new settings (an unordered retry), holding nothing.
  await h.ack(sink, head!, { outcome: 'failed', status: 500 });
  const more = await h.add(CH);
  assert.deepEqual(sink.ids().slice(4), [more], 'a new event goes while the head waits');
  await h.advance(20);
  assert.deepEqual(sink.ids().slice(5), [head]);
  for (const id of [...behind, more, head!]) await h.ack(sink, id);
  assert.equal((await h.counts()).delivered, 5);
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
});

test('ordered, settings changed with the head in flight: a failing head still goes first, the new retry applies', async (t) => {
  const record = channelRecord(CH, { ordered: true, retry: { delaysMs: [60_000] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const [head, next] = [await h.add(CH), await h.add(CH)];
  assert.deepEqual(sink.ids(), [head]);

  record.retry = { delaysMs: [30] };
  h.dispatcher.channelChanged(CH);
  await h.idle();
  assert.deepEqual(sink.ids(), [head], 'the head in flight still holds the lane');
  await h.ack(sink, head!, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(head!))?.nextAttemptAt, h.now() + 30, 'the new schedule');
  await h.advance(29);
  assert.deepEqual(sink.ids(), [head], 'the next event does not overtake the failed head');
  await h.advance(1);
  assert.deepEqual(sink.ids(), [head, head]);
  await h.ack(sink, head!);
  assert.deepEqual(sink.ids(), [head, head, next]);
  await h.ack(sink, next!);
  assert.equal((await h.counts()).delivered, 2);
});

test('retry changed while an event waits: its scheduled retry keeps its time, the next failure uses the new schedule', async (t) => {
  const record = channelRecord(CH, { retry: { delaysMs: [1_000] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  await h.ack(sink, id, { outcome: 'failed', status: 500 });
  const at = START + 1_000;
  assert.equal((await h.get(id))?.nextAttemptAt, at);

  record.retry = { delaysMs: [10, 10] };
  h.dispatcher.channelChanged(CH);
  await h.idle();
  assert.equal((await h.get(id))?.nextAttemptAt, at, 'unchanged by the change');
  await h.advance(999);
  assert.equal(sink.frames.length, 1);
  await h.advance(1);
  assert.equal(sink.frames.length, 2);
  await h.ack(sink, id, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(id))?.nextAttemptAt, at + 10, 'second delay of the new schedule');
  await h.advance(10);
  assert.equal(sink.frames.length, 3);
  await h.ack(sink, id);
  assert.equal((await h.get(id))?.status, 'delivered');
  assert.equal((await h.get(id))?.attemptCount, 3);
});

test('ordering key set with events pending: stored keys stay (old events share the empty key), new keys run in parallel', async (t) => {
  const record = channelRecord(CH, { ordered: true });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const [head, e1, e2] = [await h.add(CH), await h.add(CH), await h.add(CH)];
  assert.deepEqual(sink.ids(), [head]);

  record.orderingKey = { header: 'x-key' };
  h.dispatcher.channelChanged(CH);
  // Ingress files new events under their key.
  const [a1, b1, a2] = [await h.add(CH, 'a'), await h.add(CH, 'b'), await h.add(CH, 'a')];
  assert.deepEqual(sink.ids(), [head, a1, b1], 'keys a and b go while the old key is held');
  assert.equal((await h.get(e1!))?.orderKey, '');
  await h.ack(sink, a1!);
  assert.deepEqual(sink.ids(), [head, a1, b1, a2]);
  await h.ack(sink, head!);
  assert.deepEqual(sink.ids().slice(4), [e1], 'the old events follow the head, in order');
  await h.ack(sink, e1!);
  await h.ack(sink, e2!);
  await h.ack(sink, b1!);
  await h.ack(sink, a2!);
  assert.deepEqual(sink.ids(), [head, a1, b1, a2, e1, e2]);
  assert.equal((await h.counts()).delivered, 6);
});

test('unordered → ordered, then the session is lost: the events it had go first, in arrival order', async (t) => {
  const record = channelRecord(CH);
  const h = await harness(t, [record]);
  const first = new FakeSink('s1', 2, [CH]);
  h.dispatcher.attach(first);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await h.add(CH));
  assert.deepEqual(first.ids(), ids.slice(0, 2));

  record.ordered = true;
  h.dispatcher.channelChanged(CH);
  first.open = false;
  h.dispatcher.detach(first);
  const second = new FakeSink('s2', 10, [CH]);
  h.dispatcher.attach(second);
  await h.idle();
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(second.ids(), ids.slice(0, i + 1), `one at a time (${i})`);
    await h.ack(second, ids[i]!);
  }
  assert.deepEqual(second.ids(), ids);
  assert.equal((await h.counts()).delivered, 4);
});

test('a change on a channel with nothing pending, or unknown, places nothing', async (t) => {
  const record = channelRecord(CH);
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  h.dispatcher.channelChanged(CH);
  h.dispatcher.channelChanged('ch_unknown');
  await h.idle();
  assert.equal(sink.frames.length, 0);
  const id = await h.add(CH);
  await h.ack(sink, id);
  h.dispatcher.channelChanged(CH);
  await h.idle();
  assert.deepEqual(sink.ids(), [id], 'a delivered event is not offered again');
});

test('channelChanged with events pending applies at once: ordered → unordered while the head waits for its retry', async (t) => {
  const record = channelRecord(CH, { ordered: true, retry: { delaysMs: [60_000] } });
  const h = await harness(t, [record]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const [head, e1, e2] = [await h.add(CH), await h.add(CH), await h.add(CH)];
  await h.ack(sink, head!, { outcome: 'failed', status: 500 });
  assert.deepEqual(sink.ids(), [head], 'e1 and e2 wait behind the head for a minute');

  record.ordered = false;
  h.dispatcher.channelChanged(CH);
  await h.idle();
  assert.deepEqual(sink.ids(), [head, e1, e2], 'at once, without waiting for the head’s retry');
  assert.equal(h.now(), START);
  await h.advance(59_999);
  assert.equal(sink.frames.length, 3);
  await h.advance(1);
  assert.deepEqual(sink.ids(), [head, e1, e2, head], 'the head on its own time');
  for (const id of [e1!, e2!, head!]) await h.ack(sink, id);
  assert.equal((await h.counts()).delivered, 3);
});

// ---------------------------------------------------------------------------------------------
// Claims: leases and late acks

test('an ack of a claim that ran out, the event claimed again by another owner, is not recorded', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  assert.deepEqual(sink.ids(), [id]);
  // No renewal reached the store: once the lease ran out, another relay claims the event.
  const other = await h.store.claim({
    owner: 'relay-other',
    channelId: CH,
    ordered: false,
    limit: 10,
    now: START + LEASE_MS,
    leaseMs: LEASE_MS,
  });
  assert.deepEqual(
    other.claims.map((c) => c.event.id),
    [id],
  );

  await h.ack(sink, id, { outcome: 'failed', status: 500 });
  let summary = await h.get(id);
  assert.equal(summary?.status, 'delivering', 'still held by the new claim');
  assert.equal(summary?.attemptCount, 0);
  assert.deepEqual(summary?.attempts, []);
  assert.equal(summary?.nextAttemptAt, 0);
  assert.ok(
    h.logs.some((line) => line.includes(id) && line.includes('no longer holds')),
    'the late outcome is logged',
  );
  assert.equal(h.dispatcher.inFlightCount(sink), 0);
  assert.equal(sink.frames.length, 1, 'not offered here again: another owner holds it');

  // The new owner's outcome is the one recorded.
  const epoch = other.claims[0]!.epoch;
  const settled = await h.store.settle(
    { id, epoch },
    { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 },
  );
  assert.equal(settled?.status, 'delivered');
  await h.idle();
  summary = await h.get(id);
  assert.equal(summary?.status, 'delivered');
  assert.equal(summary?.attemptCount, 1);
  assert.equal(sink.frames.length, 1);
});

test('lease renewal keeps a slow delivery’s claim: no second delivery past the lease', async (t) => {
  const leaseMs = 3_000;
  const h = await harness(t, [channelRecord(CH)], { leaseMs });
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const id = await h.add(CH);
  assert.deepEqual(sink.ids(), [id]);
  // The app takes four leases' time to answer; renewals run every third of a lease.
  for (let i = 0; i < 12; i++) await h.advance(leaseMs / 3);
  assert.equal(h.now(), START + 4 * leaseMs);
  assert.deepEqual(sink.ids(), [id], 'offered once');
  assert.equal((await h.get(id))?.status, 'delivering');
  const other = await h.store.claim({
    owner: 'relay-other',
    channelId: CH,
    ordered: false,
    limit: 10,
    now: h.now(),
    leaseMs,
  });
  assert.deepEqual(other.claims, [], 'no other owner can take it');

  await h.ack(sink, id);
  const summary = await h.get(id);
  assert.equal(summary?.status, 'delivered');
  assert.equal(summary?.attemptCount, 1);
  assert.equal(summary?.attempts.length, 1);
  await h.advance(2 * leaseMs);
  assert.equal(sink.frames.length, 1);
});

test('a claim whose answer was lost is not renewed: it runs out and is delivered', async (t) => {
  const leaseMs = 3_000;
  const h = await harness(t, [channelRecord(CH)], { leaseMs });
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  // A slow delivery keeps renewals running all along.
  const slow = await h.add(CH);
  assert.deepEqual(sink.ids(), [slow]);
  h.watched.lostClaimAnswers = 1;
  const orphan = await h.add(CH);
  assert.deepEqual(sink.ids(), [slow], 'claimed in the store, but this relay does not know it');
  assert.equal((await h.get(orphan))?.status, 'delivering');
  assert.ok(h.logs.some((line) => line.includes('could not claim events')));

  await h.advance(leaseMs + 1_000);
  assert.deepEqual(sink.ids(), [slow, orphan], 'claimed again once its lease ran out');
  for (const id of [slow, orphan]) await h.ack(sink, id);
  assert.equal((await h.counts()).delivered, 2);
  await h.advance(2 * leaseMs);
  assert.equal(sink.frames.length, 2, 'each offered once since');
});

// ---------------------------------------------------------------------------------------------
// Skip, and bodies that cannot be read

test('skip moves a queued event out of an ordered channel’s way as failed; in flight or finished, 409', async (t) => {
  const ordered = 'ch_ordered';
  const h = await harness(t, [
    channelRecord(ordered, { ordered: true, retry: { delaysMs: [60_000] } }),
  ]);
  const sink = new FakeSink('s1', 10, [ordered]);
  h.dispatcher.attach(sink);
  const [a, b] = [await h.add(ordered), await h.add(ordered)];
  assert.deepEqual(sink.ids(), [a]);
  const conflict = (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_CONFLICT');
    assert.equal(err.status, 409);
    return true;
  };
  await assert.rejects(h.dispatcher.skip(a!), conflict, 'in flight');
  assert.equal((await h.get(a!))?.status, 'delivering');

  await h.ack(sink, a!, { outcome: 'failed', status: 500 });
  assert.deepEqual(sink.ids(), [a], 'b waits behind a for a minute');
  await h.advance(10);
  const skipped = await h.dispatcher.skip(a!);
  assert.equal(skipped.status, 'failed');
  assert.equal(skipped.attemptCount, 1);
  assert.deepEqual(
    skipped.attempts.map((x) => [x.at, x.outcome]),
    [
      [START, 'failed'],
      [START + 10, 'skipped'],
    ],
  );
  await h.idle();
  assert.deepEqual(sink.ids(), [a, b], 'b goes at once');
  await assert.rejects(h.dispatcher.skip(a!), conflict, 'already failed');
  await assert.rejects(h.dispatcher.skip('evt_nope'), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_NOT_FOUND');
    assert.equal(err.status, 404);
    return true;
  });
  await h.ack(sink, b!);
  await h.advance(60_000);
  assert.equal(sink.frames.length, 2, 'the skipped event is not retried');
  assert.equal((await h.get(a!))?.status, 'failed');
});

test('an event whose body cannot be read is offered again 30 s later; the others go meanwhile', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  h.watched.unreadable.add('evt_0001');
  const a = await h.add(CH);
  const b = await h.add(CH);
  assert.equal(a, 'evt_0001');
  assert.deepEqual(sink.ids(), [b]);
  const summary = await h.get(a);
  assert.equal(summary?.status, 'queued');
  assert.equal(summary?.attemptCount, 0, 'no attempt used');
  assert.deepEqual(summary?.attempts, []);
  // The dispatcher's READ_RETRY_MS.
  assert.equal(summary?.nextAttemptAt, START + 30_000);
  assert.ok(h.logs.some((line) => line.includes(a) && line.includes('cannot read event back')));
  assert.equal(h.dispatcher.inFlightCount(sink), 1, 'its room went back to the window');

  await h.advance(29_999);
  assert.deepEqual(sink.ids(), [b]);
  await h.advance(1);
  assert.deepEqual(sink.ids(), [b, a]);
  assert.equal(sink.frames[1]?.attempt, 1);
  assert.deepEqual(sink.frames[1]?.body, Buffer.from([0xff, 1, 0x00]));
  await h.ack(sink, a);
  await h.ack(sink, b);
  assert.equal((await h.counts()).delivered, 2);
});

test('ordered channel: once another owner took the head after this relay’s lease ran out, neither the head nor the next event goes here', async (t) => {
  const ordered = 'ch_ordered';
  const h = await harness(t, [channelRecord(ordered, { ordered: true })]);
  const sink = new FakeSink('s1', 10, [ordered]);
  h.dispatcher.attach(sink);
  const [a, b] = [await h.add(ordered), await h.add(ordered)];
  assert.deepEqual(sink.ids(), [a]);
  const claimLater = (owner: string) =>
    h.store.claim({
      owner,
      channelId: ordered,
      ordered: true,
      limit: 10,
      now: START + LEASE_MS,
      leaseMs: LEASE_MS,
    });
  const other = await claimLater('relay-other');
  assert.deepEqual(
    other.claims.map((c) => c.event.id),
    [a],
  );

  // The late ack frees room here: the fill that follows must find the key held.
  await h.ack(sink, a!);
  assert.equal((await h.get(a!))?.status, 'delivering');
  assert.equal((await h.get(b!))?.status, 'queued');
  assert.deepEqual(sink.ids(), [a], 'the other owner holds the key');
  // Whatever makes this relay look at the channel again (here a settings change), it finds the
  // key held; and so does any other owner.
  h.dispatcher.channelChanged(ordered);
  await h.idle();
  assert.deepEqual(sink.ids(), [a], 'not delivered twice at once');
  const third = await claimLater('relay-third');
  assert.deepEqual(
    third.claims.map((c) => c.event.id),
    [],
  );
});

test('each attempt records the replay it belongs to: none for the original delivery, then 1, 2, …', async (t) => {
  const h = await harness(t, [channelRecord(CH, { retry: { delaysMs: [60_000] } })]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  const a = await h.add(CH);
  await h.ack(sink, a, { outcome: 'failed', status: 500 });
  await h.dispatcher.replay(a);
  await h.idle();
  assert.deepEqual(sink.ids(), [a, a], 'the replay goes at once');
  await h.ack(sink, a, { outcome: 'failed', status: 500 });
  await h.advance(10);
  const skipped = await h.dispatcher.skip(a);
  assert.deepEqual(
    skipped.attempts.map((x) => [x.outcome, x.replay]),
    [
      ['failed', undefined],
      ['failed', 1],
      ['skipped', 1],
    ],
  );
  assert.equal('replay' in skipped.attempts[0]!, false);
});

/** A POST with no headers and a one-byte body. */
function plainPayload(id: string, channelId: string, receivedAt: number): EventPayload {
  return {
    id,
    channelId,
    receivedAt,
    method: 'POST',
    path: '',
    query: '',
    headers: [],
    originalUrl: `https://relay.example.com/h/${channelId}`,
    remoteAddress: '203.0.113.9',
    body: Buffer.from('x'),
  };
}

test('with room in a session, an event goes out as soon as stored: claimed in its append, never read back', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(sink);
  await h.idle();
  const claims = h.watched.called.get('claim') ?? 0;
  const first = await h.ingest(CH);
  const second = await h.ingest(CH);
  assert.deepEqual([first.handedOff, second.handedOff], [true, true]);
  assert.deepEqual(sink.ids(), [first.id, second.id]);
  assert.deepEqual(sink.frames[0]?.body, Buffer.from([0xff, 1, 0x00]), 'the body as given');
  assert.equal(h.watched.called.get('claim') ?? 0, claims, 'no claim');
  assert.equal(h.watched.called.get('readPayload') ?? 0, 0, 'no read');
  assert.equal((await h.get(first.id))?.status, 'delivering');
  await h.ack(sink, first.id);
  await h.ack(sink, second.id, { outcome: 'failed', status: 500 });
  assert.equal((await h.get(first.id))?.status, 'delivered');
  const retried = await h.get(second.id);
  assert.equal(retried?.status, 'queued');
  assert.equal(retried?.attemptCount, 1);
  await h.advance(20);
  assert.deepEqual(sink.ids(), [first.id, second.id, second.id], 'its retry goes by a claim');
});

test('no room, an ordered channel, or another channel of the session waiting: stored and claimed as before', async (t) => {
  const ordered = channelRecord('ch_ordered', { ordered: true });
  const h = await harness(t, [channelRecord(CH), channelRecord('ch_b'), ordered]);
  const sink = new FakeSink('s1', 1, [CH, 'ch_b', 'ch_ordered']);
  h.dispatcher.attach(sink);
  await h.idle();
  const a = await h.ingest(CH);
  assert.equal(a.handedOff, true);
  const full = await h.ingest(CH);
  assert.equal(full.handedOff, false, 'the window is full');
  assert.equal((await h.get(full.id))?.status, 'queued');
  await h.ack(sink, a.id);
  assert.deepEqual(sink.ids(), [a.id, full.id], 'claimed once room was freed');
  await h.ack(sink, full.id);

  const ordered1 = await h.ingest('ch_ordered');
  assert.equal(ordered1.handedOff, false, 'ordered: one per key, by a claim');
  assert.equal(sink.ids().at(-1), ordered1.id);
  await h.ack(sink, ordered1.id);

  // An event of ch_b reported and not yet claimed: the room is kept for it.
  const b = await h.store.appendEvent(plainPayload('evt_b', 'ch_b', h.now()));
  assert.equal(h.dispatcher.reserve(CH), null, 'ch_b waits for this room');
  await h.idle();
  assert.equal(sink.ids().at(-1), b.id);
  await h.ack(sink, b.id);
  const room = h.dispatcher.reserve(CH);
  assert.notEqual(room, null, 'room, and nothing else waits');
  if (room) h.dispatcher.cancel(room);
});

test('a hand-off whose session ended meanwhile goes to another session, else back to the queue', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const s1 = new FakeSink('s1', 10, [CH]);
  h.dispatcher.attach(s1);
  await h.idle();
  const payload = (id: string) => plainPayload(id, CH, h.now());
  const room = h.dispatcher.reserve(CH);
  assert.ok(room);
  const appended = await h.store.appendClaimed(payload('evt_x1'), room.claim);
  const s2 = new FakeSink('s2', 10, [CH]);
  h.dispatcher.attach(s2);
  s1.open = false;
  h.dispatcher.detach(s1);
  assert.equal(h.dispatcher.handOff(room, appended, payload('evt_x1')), true);
  await h.idle();
  assert.deepEqual(s2.ids(), ['evt_x1']);

  const again = h.dispatcher.reserve(CH);
  assert.ok(again);
  const stored = await h.store.appendClaimed(payload('evt_x2'), again.claim);
  s2.open = false;
  h.dispatcher.detach(s2);
  assert.equal(h.dispatcher.handOff(again, stored, payload('evt_x2')), false, 'not sent');
  await h.idle();
  assert.equal((await h.get('evt_x2'))?.status, 'queued', 'released: no session is left');
  const s3 = new FakeSink('s3', 10, [CH]);
  h.dispatcher.attach(s3);
  await h.idle();
  assert.deepEqual(s3.ids(), ['evt_x1', 'evt_x2'], 'both offered again');
});

test('a reservation whose append failed gives its room back', async (t) => {
  const h = await harness(t, [channelRecord(CH)]);
  const sink = new FakeSink('s1', 1, [CH]);
  h.dispatcher.attach(sink);
  await h.idle();
  const room = h.dispatcher.reserve(CH);
  assert.ok(room);
  assert.equal(h.dispatcher.reserve(CH), null, 'the one slot is held');
  h.dispatcher.cancel(room);
  assert.notEqual(h.dispatcher.reserve(CH), null);
});
