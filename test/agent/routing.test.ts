/**
 * Route selection (which routes of the agent's config an event goes to) and the per-route
 * concurrency limit, as pure units: no relay, no sockets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.ts';
import { selectRoutes, Semaphore, type Selection } from '../../agent/routing.ts';
import { JSON_LOOKUP_LIMITS } from '../../shared/bounded-json.ts';
import type { HeaderPair, RelayFrame } from '../../shared/protocol.ts';

type Deliver = Extract<RelayFrame, { type: 'deliver' }>;

const CHANNEL_ID = 'ch_github0001';
const CHANNEL_NAME = 'github';

function config(routes: Record<string, unknown>[]): AgentConfig {
  return parseAgentConfig(JSON.stringify({ routes }), '/etc/postern/agent.yaml');
}

function frame(
  opts: {
    channelId?: string;
    channelName?: string;
    headers?: HeaderPair[];
    body?: string | Buffer;
    skipRoutes?: string[];
  } = {},
): Deliver {
  const body = opts.body ?? '{}';
  return {
    type: 'deliver',
    eventId: 'evt_01hzzzzzzzzzzzzzzzzzzzzzzz',
    channelId: opts.channelId ?? CHANNEL_ID,
    channelName: opts.channelName ?? CHANNEL_NAME,
    attempt: 1,
    method: 'POST',
    path: '',
    query: '',
    headers: opts.headers ?? [['content-type', 'application/json']],
    originalUrl: `https://relay.example/h/${CHANNEL_ID}`,
    remoteAddress: '203.0.113.7',
    receivedAt: 1_700_000_000_000,
    wantResponse: false,
    skipRoutes: opts.skipRoutes ?? [],
    replay: 0,
    body: typeof body === 'string' ? Buffer.from(body) : body,
  };
}

/** The names of the selected routes, or the kind when nothing is delivered. */
function names(selection: Selection): string[] | 'no_route' | 'filtered' {
  return selection.kind === 'deliver' ? selection.routes.map((r) => r.name) : selection.kind;
}

const A = 'http://127.0.0.1:3001/a';
const B = 'http://127.0.0.1:3002/b';
const C = 'http://127.0.0.1:3003/c';

test('no route for the channel: no_route (the event waits), whatever the event', () => {
  const cfg = config([
    { name: 'other', channel: 'stripe', target: A },
    { name: 'other-2', channel: 'ch_stripe0001', target: B, match: { headers: { x: 'y' } } },
  ]);
  assert.equal(names(selectRoutes(cfg, frame())), 'no_route');
  assert.equal(names(selectRoutes(cfg, frame({ headers: [['x', 'y']] }))), 'no_route');
  assert.deepEqual(selectRoutes(cfg, frame()), { kind: 'no_route' });
});

test('a route names its channel by id or by name', () => {
  const byId = config([{ name: 'by-id', channel: CHANNEL_ID, target: A }]);
  const byName = config([{ name: 'by-name', channel: CHANNEL_NAME, target: A }]);
  assert.deepEqual(names(selectRoutes(byId, frame())), ['by-id']);
  assert.deepEqual(names(selectRoutes(byName, frame())), ['by-name']);
  // Another channel's event does not reach either.
  const other = frame({ channelId: 'ch_other00001', channelName: 'other' });
  assert.equal(names(selectRoutes(byId, other)), 'no_route');
  assert.equal(names(selectRoutes(byName, other)), 'no_route');
});

test('routes exist but none matches: filtered', () => {
  const cfg = config([
    { name: 'push', channel: CHANNEL_NAME, target: A, match: { headers: { 'x-event': 'push' } } },
    {
      name: 'acme',
      channel: CHANNEL_NAME,
      target: B,
      match: { json: { 'repository.full_name': 'acme/api' } },
    },
  ]);
  const ping = frame({
    headers: [['x-event', 'ping']],
    body: JSON.stringify({ repository: { full_name: 'other/repo' } }),
  });
  assert.deepEqual(selectRoutes(cfg, ping), { kind: 'filtered' });
  // No header at all and no body field at all: also filtered.
  assert.deepEqual(selectRoutes(cfg, frame({ headers: [], body: '{}' })), { kind: 'filtered' });
});

test('a route without match takes every event of its channel', () => {
  const cfg = config([{ name: 'all', channel: CHANNEL_NAME, target: A }]);
  assert.deepEqual(names(selectRoutes(cfg, frame({ headers: [], body: 'not json' }))), ['all']);
  assert.deepEqual(names(selectRoutes(cfg, frame({ body: Buffer.alloc(0) }))), ['all']);
});

test('header names match case-insensitively; values exactly, any of a list', () => {
  const cfg = config([
    {
      name: 'push',
      channel: CHANNEL_NAME,
      target: A,
      match: { headers: { 'X-GitHub-Event': ['push', 'release'] } },
    },
  ]);
  const select = (headers: HeaderPair[]) => names(selectRoutes(cfg, frame({ headers })));
  assert.deepEqual(select([['x-github-event', 'push']]), ['push']);
  assert.deepEqual(select([['X-GITHUB-EVENT', 'push']]), ['push']);
  assert.deepEqual(select([['X-GitHub-Event', 'release']]), ['push']);
  assert.equal(select([['x-github-event', 'issues']]), 'filtered');
  assert.equal(select([['x-github-delivery', 'push']]), 'filtered');
  assert.equal(select([]), 'filtered');
});

test('every header of a match must hold', () => {
  const cfg = config([
    {
      name: 'both',
      channel: CHANNEL_NAME,
      target: A,
      match: { headers: { 'x-event': 'push', 'x-source': ['ci', 'bot'] } },
    },
  ]);
  const select = (headers: HeaderPair[]) => names(selectRoutes(cfg, frame({ headers })));
  assert.deepEqual(
    select([
      ['X-Event', 'push'],
      ['x-source', 'bot'],
    ]),
    ['both'],
  );
  assert.equal(select([['x-event', 'push']]), 'filtered');
  assert.equal(select([['x-source', 'ci']]), 'filtered');
  assert.equal(
    select([
      ['x-event', 'push'],
      ['x-source', 'human'],
    ]),
    'filtered',
  );
});

test('JSON fields: dotted paths, lists of values, strings, numbers and booleans', () => {
  const cfg = config([
    {
      name: 'repos',
      channel: CHANNEL_NAME,
      target: A,
      match: { json: { 'repository.full_name': ['acme/api', 'acme/web'] } },
    },
    { name: 'prs', channel: CHANNEL_NAME, target: B, match: { json: { 'pr.number': [7, 9] } } },
    { name: 'merged', channel: CHANNEL_NAME, target: C, match: { json: { 'pr.merged': true } } },
  ]);
  const select = (body: unknown) => names(selectRoutes(cfg, frame({ body: JSON.stringify(body) })));
  assert.deepEqual(select({ repository: { full_name: 'acme/api' } }), ['repos']);
  assert.deepEqual(select({ repository: { full_name: 'acme/web' } }), ['repos']);
  assert.equal(select({ repository: { full_name: 'acme/cli' } }), 'filtered');
  assert.deepEqual(select({ pr: { number: 9 } }), ['prs']);
  assert.equal(select({ pr: { number: 8 } }), 'filtered');
  // Types are kept: the string "7" is not the number 7, "true" is not true.
  assert.equal(select({ pr: { number: '7' } }), 'filtered');
  assert.equal(select({ pr: { merged: 'true' } }), 'filtered');
  assert.deepEqual(select({ pr: { number: 7, merged: true } }), ['prs', 'merged']);
  // A missing or non-object step of the path is no match, not an error.
  assert.equal(select({ repository: 'acme/api' }), 'filtered');
  assert.equal(select({ repository: null }), 'filtered');
  assert.equal(select({}), 'filtered');
  assert.equal(select([{ repository: { full_name: 'acme/api' } }]), 'filtered');
  assert.equal(select('acme/api'), 'filtered');
  assert.equal(select(null), 'filtered');
  // A whole object is not a scalar value.
  assert.equal(select({ repository: { full_name: { name: 'acme/api' } } }), 'filtered');
});

test('headers and JSON fields of one match must all hold', () => {
  const cfg = config([
    {
      name: 'api-push',
      channel: CHANNEL_NAME,
      target: A,
      match: { headers: { 'x-event': 'push' }, json: { 'repo.name': 'api' } },
    },
  ]);
  const select = (headers: HeaderPair[], body: unknown) =>
    names(selectRoutes(cfg, frame({ headers, body: JSON.stringify(body) })));
  assert.deepEqual(select([['x-event', 'push']], { repo: { name: 'api' } }), ['api-push']);
  assert.equal(select([['x-event', 'issues']], { repo: { name: 'api' } }), 'filtered');
  assert.equal(select([['x-event', 'push']], { repo: { name: 'web' } }), 'filtered');
});

test('a body that is not JSON never matches a JSON field; header matches still work', () => {
  const cfg = config([
    { name: 'json', channel: CHANNEL_NAME, target: A, match: { json: { type: 'x' } } },
    { name: 'header', channel: CHANNEL_NAME, target: B, match: { headers: { 'x-event': 'x' } } },
  ]);
  for (const body of ['type=x', '{"type": "x"', '', '\u0000\u0001', 'x']) {
    assert.equal(
      names(selectRoutes(cfg, frame({ body }))),
      'filtered',
      `body ${JSON.stringify(body)}`,
    );
    assert.deepEqual(
      names(selectRoutes(cfg, frame({ body, headers: [['x-event', 'x']] }))),
      ['header'],
      `body ${JSON.stringify(body)} with the header`,
    );
  }
  // The same field in valid JSON does match, so the refusals above come from the body.
  assert.deepEqual(names(selectRoutes(cfg, frame({ body: '{"type":"x"}' }))), ['json']);
});

test('JSON rules read bodies up to 1 MiB and 64 levels deep; past either, they never match', () => {
  const cfg = config([
    { name: 'json', channel: CHANNEL_NAME, target: A, match: { json: { type: 'x' } } },
    { name: 'all', channel: CHANNEL_NAME, target: B },
  ]);
  const { maxBytes, maxDepth } = JSON_LOOKUP_LIMITS;
  /** `{"type":"x","pad":"…"}` of exactly `size` bytes. */
  const padded = (size: number) => {
    const head = '{"type":"x","pad":"';
    return `${head}${'p'.repeat(size - head.length - 2)}"}`;
  };
  /** `{"type":"x","deep":[[…]]}` with `depth` levels in all (the outer object is one). */
  const deep = (depth: number) =>
    `{"type":"x","deep":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
  const select = (body: string) => names(selectRoutes(cfg, frame({ body })));
  assert.equal(padded(maxBytes).length, maxBytes);
  assert.deepEqual(select(padded(maxBytes)), ['json', 'all']);
  assert.deepEqual(select(padded(maxBytes + 1)), ['all']);
  assert.deepEqual(select(deep(maxDepth)), ['json', 'all']);
  assert.deepEqual(select(deep(maxDepth + 1)), ['all']);
  // With only the JSON route, a body past the bounds is filtered.
  const only = config([
    { name: 'json', channel: CHANNEL_NAME, target: A, match: { json: { type: 'x' } } },
  ]);
  assert.equal(names(selectRoutes(only, frame({ body: deep(10_000) }))), 'filtered');
  assert.equal(names(selectRoutes(only, frame({ body: padded(20 * maxBytes) }))), 'filtered');
});

test('several matching routes fan out, in config order; other channels are ignored', () => {
  const cfg = config([
    { name: 'elsewhere', channel: 'stripe', target: C },
    { name: 'push', channel: CHANNEL_NAME, target: A, match: { headers: { 'x-event': 'push' } } },
    { name: 'audit', channel: CHANNEL_ID, target: C },
    {
      name: 'acme',
      channel: CHANNEL_NAME,
      target: B,
      match: { json: { 'repository.full_name': 'acme/api' } },
    },
  ]);
  const both = frame({
    headers: [['x-event', 'push']],
    body: JSON.stringify({ repository: { full_name: 'acme/api' } }),
  });
  assert.deepEqual(names(selectRoutes(cfg, both)), ['push', 'audit', 'acme']);
  const one = frame({
    headers: [['x-event', 'push']],
    body: JSON.stringify({ repository: { full_name: 'other/repo' } }),
  });
  assert.deepEqual(names(selectRoutes(cfg, one)), ['push', 'audit']);
  const selection = selectRoutes(cfg, both);
  assert.equal(selection.kind, 'deliver');
  if (selection.kind === 'deliver') {
    assert.deepEqual(
      selection.routes.map((r) => r.target.href),
      [A, C, B],
    );
  }
});

test('skipRoutes: routes delivered by an earlier attempt are left out of a retry', () => {
  const cfg = config([
    { name: 'push', channel: CHANNEL_NAME, target: A, match: { headers: { 'x-event': 'push' } } },
    { name: 'all', channel: CHANNEL_NAME, target: B },
    {
      name: 'issues',
      channel: CHANNEL_NAME,
      target: C,
      match: { headers: { 'x-event': 'issues' } },
    },
  ]);
  const push = (skipRoutes: string[]) =>
    selectRoutes(cfg, frame({ headers: [['x-event', 'push']], skipRoutes }));
  assert.deepEqual(names(push([])), ['push', 'all']);
  assert.deepEqual(names(push(['push'])), ['all']);
  assert.deepEqual(names(push(['all'])), ['push']);
  // A skipped route that does not match anyway changes nothing.
  assert.deepEqual(names(push(['issues'])), ['push', 'all']);
  assert.deepEqual(names(push(['unknown-route'])), ['push', 'all']);
  // Every matching route got it already: deliver to none (done), not filtered or no_route.
  assert.deepEqual(push(['push', 'all']), { kind: 'deliver', routes: [] });
  // A ping matches only "all": once "all" got it, nothing is left to deliver.
  assert.deepEqual(
    selectRoutes(cfg, frame({ headers: [['x-event', 'ping']], skipRoutes: ['all'] })),
    { kind: 'deliver', routes: [] },
  );
  assert.deepEqual(
    names(selectRoutes(cfg, frame({ headers: [['x-event', 'ping']], skipRoutes: [] }))),
    ['all'],
  );
});

/** A promise with its resolve, for holding tasks until the test lets them finish. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets every pending promise callback run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

test('Semaphore: never more than its limit at once; waiters start in call order', async () => {
  const LIMIT = 3;
  const TASKS = 12;
  const sem = new Semaphore(LIMIT);
  const gates = Array.from({ length: TASKS }, () => deferred());
  const started: number[] = [];
  let running = 0;
  let maxRunning = 0;
  const results = gates.map((gate, i) =>
    sem.run(async () => {
      started.push(i);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await gate.promise;
      running--;
      return i * 10;
    }),
  );
  await settle();
  assert.deepEqual(started, [0, 1, 2], 'the first three start at once, the rest wait');
  assert.equal(running, LIMIT);
  // Finish them out of order: each freed slot goes to the oldest waiter.
  const finishOrder = [1, 0, 4, 2, 3, 7, 5, 6, 9, 8, 10, 11];
  for (const i of finishOrder) {
    gates[i]!.resolve();
    await settle();
    assert.ok(running <= LIMIT, `${running} running after task ${i} finished`);
  }
  assert.deepEqual(
    started,
    Array.from({ length: TASKS }, (_, i) => i),
    'waiters started in the order run() was called',
  );
  assert.equal(maxRunning, LIMIT, `max ${maxRunning} at once`);
  assert.equal(running, 0);
  assert.deepEqual(
    await Promise.all(results),
    Array.from({ length: TASKS }, (_, i) => i * 10),
  );
});

test('Semaphore: a failing task frees its slot and its error reaches the caller', async () => {
  const sem = new Semaphore(1);
  const order: string[] = [];
  const gate = deferred();
  const first = sem.run(async () => {
    order.push('first');
    await gate.promise;
    throw new Error('boom');
  });
  const second = sem.run(async () => {
    order.push('second');
    return 'ok';
  });
  await settle();
  assert.deepEqual(order, ['first'], 'the second waits for the slot');
  gate.resolve();
  await assert.rejects(first, /boom/);
  assert.equal(await second, 'ok');
  assert.deepEqual(order, ['first', 'second']);
  // The slot is free again: a new task starts at once.
  let ran = false;
  const third = sem.run(async () => {
    ran = true;
  });
  await settle();
  assert.equal(ran, true);
  await third;
});

test('Semaphore: many short tasks under load keep the limit exactly', async () => {
  const LIMIT = 4;
  const sem = new Semaphore(LIMIT);
  let running = 0;
  let maxRunning = 0;
  let done = 0;
  const tasks = Array.from({ length: 200 }, (_, i) =>
    sem.run(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      // A mix of immediate and timer-delayed finishes.
      if (i % 3 === 0) await new Promise<void>((r) => setTimeout(r, 1));
      else await Promise.resolve();
      running--;
      done++;
    }),
  );
  await Promise.all(tasks);
  assert.equal(done, 200);
  assert.equal(maxRunning, LIMIT, `max ${maxRunning} at once, limit ${LIMIT}`);
  assert.equal(running, 0);
});
