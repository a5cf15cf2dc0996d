import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sessions, type Sink } from '../../server/dispatch/sessions.ts';
import { MAX_INFLIGHT_BYTES } from '../../shared/protocol.ts';

function sink(id: string, window = 10, open = true): Sink {
  return { id, agentId: `ag_${id}`, window, channels: ['ch_1'], open, send: () => undefined };
}

test('pick: the open session with the most room; none when all are full or closed', () => {
  const s = new Sessions();
  const a = sink('a', 2);
  const b = sink('b', 3);
  const closed = sink('c', 100, false);
  for (const x of [a, b, closed]) s.attach(x);
  assert.equal(s.pick([a, b, closed], 0), b);
  s.sent(b, 'e1', 1, 0, 'ch_1');
  s.sent(b, 'e2', 1, 0, 'ch_1');
  assert.equal(s.pick([a, b], 0), a, 'a has 2 free, b has 1');
  s.sent(a, 'e3', 1, 0, 'ch_1');
  s.sent(a, 'e4', 1, 0, 'ch_1');
  s.sent(b, 'e5', 1, 0, 'ch_1');
  assert.equal(s.pick([a, b, closed], 0), undefined);
  s.settled(a, 'e3', 1);
  assert.equal(s.pick([a, b], 0), a);
  assert.equal(s.pick([sink('unknown')], 0), undefined, 'a session never attached is never picked');
});

test('a session failing 3 times in a row is benched for 30 s while another is healthy', () => {
  const s = new Sessions();
  const bad = sink('bad', 10);
  const good = sink('good', 2);
  s.attach(bad);
  s.attach(good);
  for (let i = 0; i < 3; i++) s.judge(bad, 'failed', 1_000);
  s.sent(good, 'g1', 1, 1_000, 'ch_1');
  s.sent(good, 'g2', 1, 1_000, 'ch_1');
  assert.equal(
    s.pick([bad, good], 1_000),
    undefined,
    'wait for the healthy one rather than use the benched',
  );
  assert.equal(s.pick([bad], 1_000), bad, 'alone, a benched session still works');
  assert.equal(s.pick([bad, good], 31_001), bad, 'the bench ends after 30 s');
  s.judge(bad, 'failed', 31_001);
  s.judge(bad, 'delivered', 31_002);
  s.settled(good, 'g1', 1);
  assert.equal(s.pick([bad, good], 31_002), bad, 'a success clears the count');
  s.judge(bad, 'no_route', 31_003);
  s.judge(bad, 'failed', 31_003);
  s.judge(bad, 'failed', 31_003);
  assert.equal(s.pick([bad, good], 31_003), bad, 'two failures do not bench');
});

test('a session with MAX_INFLIGHT_BYTES unacknowledged takes nothing more', () => {
  const s = new Sessions();
  const a = sink('a', 100);
  s.attach(a);
  s.sent(a, 'big', MAX_INFLIGHT_BYTES, 0, 'ch_1');
  assert.equal(s.pick([a], 0), undefined);
  s.settled(a, 'big', MAX_INFLIGHT_BYTES);
  assert.equal(s.pick([a], 0), a);
});

test('detach returns what was in flight, newest first; oldestMs and count', () => {
  const s = new Sessions();
  const a = sink('a');
  s.attach(a);
  s.sent(a, 'e1', 1, 100, 'ch_1');
  s.sent(a, 'e2', 1, 250, 'ch_1');
  assert.equal(s.count(a), 2);
  assert.equal(s.oldestMs(a, 1_100), 1_000);
  assert.equal(s.has(a, 'e1'), true);
  assert.deepEqual(s.detach(a), ['e2', 'e1']);
  assert.equal(s.count(a), 0);
  assert.equal(s.oldestMs(a, 1_100), 0);
});

test('inOrder runs sends one after another even when the first is slower', async () => {
  const s = new Sessions();
  const a = sink('a');
  s.attach(a);
  const order: string[] = [];
  let release: () => void = () => undefined;
  const slow = new Promise<void>((r) => (release = r));
  s.inOrder(a, async () => {
    await slow;
    order.push('first');
  });
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  s.inOrder(a, async () => {
    order.push('second');
    done();
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, []);
  release();
  await finished;
  assert.deepEqual(order, ['first', 'second']);
});

test('room: open, attached, what is left of the window, 0 at the byte bound', () => {
  const s = new Sessions();
  const a = sink('a', 2);
  assert.equal(s.room(a), 0, 'not attached');
  s.attach(a);
  assert.equal(s.room(a), 2);
  s.sent(a, 'e1', 1, 0, 'ch_1');
  assert.equal(s.room(a), 1, '1 of 2');
  s.sent(a, 'e2', 1, 0, 'ch_1');
  assert.equal(s.room(a), 0, 'window full');
  s.settled(a, 'e1', 1);
  assert.equal(s.room(a), 1);
  s.sent(a, 'big', MAX_INFLIGHT_BYTES, 0, 'ch_1');
  assert.equal(s.room(a), 0, 'byte bound');
  s.settled(a, 'big', MAX_INFLIGHT_BYTES);
  assert.equal(s.room(a), 1);
  assert.equal(s.room(sink('closed', 10, false)), 0, 'closed');
});

test('fillOrder: fewest in flight first, ties from the channel after the one last sent from', () => {
  const s = new Sessions();
  const a: Sink = { ...sink('a', 10), channels: ['c1', 'c2', 'c3', 'c4'] };
  s.attach(a);
  assert.deepEqual(s.fillOrder(a), ['c1', 'c2', 'c3', 'c4'], 'nothing sent yet');
  s.sent(a, 'e1', 1, 0, 'c2');
  assert.deepEqual(s.fillOrder(a), ['c3', 'c4', 'c1', 'c2'], 'c2 has one in flight, and went last');
  s.sent(a, 'e2', 1, 0, 'c4');
  assert.deepEqual(s.fillOrder(a), ['c1', 'c3', 'c2', 'c4'], 'idle ones first, each group in turn');
  s.settled(a, 'e1', 1);
  assert.deepEqual(s.fillOrder(a), ['c1', 'c2', 'c3', 'c4'], 'c2 idle again');
  s.sent(a, 'e3', 1, 0, 'c1');
  s.sent(a, 'e4', 1, 0, 'c1');
  assert.deepEqual(s.fillOrder(a), ['c2', 'c3', 'c4', 'c1'], 'c1 has two in flight');
  // A channel the session is no longer granted: the turn starts from the first channel.
  s.sent(a, 'e5', 1, 0, 'gone');
  assert.deepEqual(s.fillOrder(a), ['c2', 'c3', 'c4', 'c1']);
  s.settled(a, 'e3', 1);
  s.settled(a, 'e4', 1);
  s.settled(a, 'e2', 1);
  s.settled(a, 'e4', 1); // settled twice: counted once
  assert.deepEqual(s.fillOrder(a), ['c1', 'c2', 'c3', 'c4']);
  assert.equal(s.count(a), 1, 'e5 is still in flight');
});
