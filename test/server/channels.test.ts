import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyChannelPatch,
  channelView,
  DEFAULT_SYNC_TIMEOUT_MS,
  parseNewChannel,
} from '../../server/channels.ts';
import { DEFAULT_RETRY_DELAYS_MS } from '../../server/dispatch/retry.ts';
import type { ChannelRecord } from '../../server/store/types.ts';
import { PosternError } from '../../shared/errors.ts';
import type { Obj } from '../../shared/fields.ts';

const ID = 'ch_0123456789abcdefghjkmnpqrs';
const NOW = 1_700_000_000_000;

test('parseNewChannel: a name alone gets every default', () => {
  const channel = parseNewChannel({ name: 'github-prod' }, ID, NOW);
  assert.deepEqual(channel, {
    id: ID,
    name: 'github-prod',
    verify: null,
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [...DEFAULT_RETRY_DELAYS_MS] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 26_214_400,
    methods: null,
    paths: null,
    createdAt: NOW,
  });
  assert.equal(DEFAULT_SYNC_TIMEOUT_MS, 10_000);
  // The default schedule is copied, so changing one channel's never changes another's.
  assert.notEqual(channel.retry.delaysMs, DEFAULT_RETRY_DELAYS_MS);
});

test('parseNewChannel: every option given', () => {
  const channel = parseNewChannel(
    {
      name: 'Slack.commands_1',
      verify: { provider: 'github', secret: 's3cret' },
      response: { mode: 'sync', timeoutMs: 3_000 },
      retry: { delaysMs: [0, 1_000, 7 * 24 * 3_600_000] },
      ordered: true,
      orderingKey: null,
      rateLimit: null,
      maxBodyBytes: 1_024,
      methods: ['POST', 'PUT'],
      paths: ['', '/push', '/github/*'],
    },
    ID,
    NOW,
  );
  assert.deepEqual(channel, {
    id: ID,
    name: 'Slack.commands_1',
    verify: { provider: 'github', secret: 's3cret' },
    response: { mode: 'sync', timeoutMs: 3_000 },
    retry: { delaysMs: [0, 1_000, 604_800_000] },
    ordered: true,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 1_024,
    methods: ['POST', 'PUT'],
    paths: ['', '/push', '/github/*'],
    createdAt: NOW,
  });
});

test('parseNewChannel: response without timeoutMs gets the default; empty retry list is allowed', () => {
  const channel = parseNewChannel(
    { name: 'a', response: { mode: 'sync' }, retry: { delaysMs: [] }, verify: null },
    ID,
    NOW,
  );
  assert.deepEqual(channel.response, { mode: 'sync', timeoutMs: DEFAULT_SYNC_TIMEOUT_MS });
  assert.deepEqual(channel.retry, { delaysMs: [] });
  assert.equal(channel.verify, null);
});

const bad: [description: string, raw: Obj, field: string][] = [
  ['no name', {}, 'name'],
  ['an empty name', { name: '' }, 'name'],
  ['a numeric name', { name: 5 }, 'name'],
  ['a name starting with "-"', { name: '-github' }, 'name'],
  ['a name with a space', { name: 'git hub' }, 'name'],
  ['a name with a slash', { name: 'a/b' }, 'name'],
  ['a 65-character name', { name: 'a'.repeat(65) }, 'name'],
  ['an unknown field', { name: 'a', colour: 'blue' }, 'colour'],
  ['verify that is a string', { name: 'a', verify: 'github' }, 'verify'],
  [
    'verify with an unknown provider',
    { name: 'a', verify: { provider: 'nope' } },
    'verify.provider',
  ],
  ['verify without a provider', { name: 'a', verify: { secret: 'x' } }, 'verify.provider'],
  [
    'github verify without a secret',
    { name: 'a', verify: { provider: 'github' } },
    'verify.secret',
  ],
  [
    'github verify with an empty secret',
    { name: 'a', verify: { provider: 'github', secret: '' } },
    'verify.secret',
  ],
  ['response that is a string', { name: 'a', response: 'sync' }, 'response'],
  ['response with mode "later"', { name: 'a', response: { mode: 'later' } }, 'response.mode'],
  ['response without mode', { name: 'a', response: { timeoutMs: 1_000 } }, 'response.mode'],
  [
    'response with timeoutMs 99',
    { name: 'a', response: { mode: 'sync', timeoutMs: 99 } },
    'response.timeoutMs',
  ],
  [
    'response with timeoutMs 60001',
    { name: 'a', response: { mode: 'sync', timeoutMs: 60_001 } },
    'response.timeoutMs',
  ],
  ['retry that is a list', { name: 'a', retry: [1, 2] }, 'retry'],
  ['retry without delaysMs', { name: 'a', retry: {} }, 'retry'],
  ['retry with 51 delays', { name: 'a', retry: { delaysMs: new Array(51).fill(1) } }, 'retry'],
  ['a negative delay', { name: 'a', retry: { delaysMs: [1, -1] } }, 'retry.delaysMs[1]'],
  ['a fractional delay', { name: 'a', retry: { delaysMs: [1.5] } }, 'retry.delaysMs[0]'],
  ['a string delay', { name: 'a', retry: { delaysMs: [1, 2, '3'] } }, 'retry.delaysMs[2]'],
  [
    'a delay over 7 days',
    { name: 'a', retry: { delaysMs: [7 * 24 * 3_600_000 + 1] } },
    'retry.delaysMs[0]',
  ],
  ['ordered "yes"', { name: 'a', ordered: 'yes' }, 'ordered'],
  ['ordered 1', { name: 'a', ordered: 1 }, 'ordered'],
  ['maxBodyBytes 0', { name: 'a', maxBodyBytes: 0 }, 'maxBodyBytes'],
  ['maxBodyBytes over 25 MiB', { name: 'a', maxBodyBytes: 26_214_401 }, 'maxBodyBytes'],
  ['maxBodyBytes 1.5', { name: 'a', maxBodyBytes: 1.5 }, 'maxBodyBytes'],
  ['maxBodyBytes "1024"', { name: 'a', maxBodyBytes: '1024' }, 'maxBodyBytes'],
  ['methods "POST"', { name: 'a', methods: 'POST' }, 'methods'],
  ['methods []', { name: 'a', methods: [] }, 'methods'],
  ['17 methods', { name: 'a', methods: new Array(17).fill('POST') }, 'methods'],
  ['a lower-case method', { name: 'a', methods: ['POST', 'get'] }, 'methods[1]'],
  ['a method with a space', { name: 'a', methods: ['PO ST'] }, 'methods[0]'],
  ['a method twice', { name: 'a', methods: ['POST', 'POST'] }, 'methods[1]'],
  ['a number as a method', { name: 'a', methods: [1] }, 'methods[0]'],
  ['paths "/push"', { name: 'a', paths: '/push' }, 'paths'],
  ['paths []', { name: 'a', paths: [] }, 'paths'],
  ['65 paths', { name: 'a', paths: Array.from({ length: 65 }, (_, i) => `/p${i}`) }, 'paths'],
  ['a path without a leading slash', { name: 'a', paths: ['push'] }, 'paths[0]'],
  ['a path with ..', { name: 'a', paths: ['/a/../admin'] }, 'paths[0]'],
  ['a path ending in ..', { name: 'a', paths: ['/a/..'] }, 'paths[0]'],
  ['a path with an encoded ..', { name: 'a', paths: ['/a/%2e%2e/b'] }, 'paths[0]'],
  ['a path with a . segment', { name: 'a', paths: ['/a/./b'] }, 'paths[0]'],
  ['a prefix with ..', { name: 'a', paths: ['/../*'] }, 'paths[0]'],
  ['a path with a backslash', { name: 'a', paths: ['/a\\b'] }, 'paths[0]'],
  ['a path with a query', { name: 'a', paths: ['/a?x=1'] }, 'paths[0]'],
  ['a path with a fragment', { name: 'a', paths: ['/a#x'] }, 'paths[0]'],
  ['a star inside a path', { name: 'a', paths: ['/a/*/b'] }, 'paths[0]'],
  ['a star not after a slash', { name: 'a', paths: ['/a*'] }, 'paths[0]'],
  ['a path with a space', { name: 'a', paths: ['/a b'] }, 'paths[0]'],
  ['a path over 256 characters', { name: 'a', paths: [`/${'a'.repeat(256)}`] }, 'paths[0]'],
  ['a path twice', { name: 'a', paths: ['/a', '/b', '/a'] }, 'paths[2]'],
  ['a path that is not a string', { name: 'a', paths: [null] }, 'paths[0]'],
];

for (const [description, raw, field] of bad) {
  test(`parseNewChannel refuses ${description} with a 400 naming ${field}`, () => {
    assert.throws(
      () => parseNewChannel(raw, ID, NOW),
      (err: unknown) => {
        assert.ok(err instanceof PosternError);
        assert.equal(err.code, 'ERR_BAD_REQUEST');
        assert.equal(err.status, 400);
        assert.equal(err.expose, true);
        assert.ok(
          err.message.startsWith(`${field}: expected `),
          `message "${err.message}" does not start with "${field}: expected "`,
        );
        return true;
      },
    );
  });
}

function sample(): ChannelRecord {
  return parseNewChannel({ name: 'orig', ordered: true }, ID, NOW);
}

test('applyChannelPatch changes only the fields given', () => {
  const channel = sample();
  applyChannelPatch(channel, { retry: { delaysMs: [10] } });
  assert.deepEqual(channel, { ...sample(), retry: { delaysMs: [10] } });
  applyChannelPatch(channel, { name: 'renamed', ordered: false });
  assert.deepEqual(channel, {
    ...sample(),
    name: 'renamed',
    ordered: false,
    retry: { delaysMs: [10] },
  });
});

test('applyChannelPatch refuses id and createdAt (not patchable)', () => {
  for (const key of ['id', 'createdAt']) {
    const channel = sample();
    assert.throws(
      () => applyChannelPatch(channel, { [key]: 'x' }),
      (err: unknown) => err instanceof PosternError && err.message.startsWith(`${key}: `),
    );
    assert.deepEqual(channel, sample());
  }
});

test('channelView shows the channel without any verification secret', () => {
  const channel = parseNewChannel(
    {
      name: 'gh',
      verify: {
        provider: 'github',
        secret: 'current-secret-value-1',
        previousSecret: 'previous-secret-value-2',
      },
    },
    ID,
    NOW,
  );
  const view = channelView(channel, 'https://relay.example.com');
  assert.deepEqual(view, {
    id: ID,
    name: 'gh',
    ingressUrl: `https://relay.example.com/h/${ID}`,
    verify: { provider: 'github', rotating: true },
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [...DEFAULT_RETRY_DELAYS_MS] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 26_214_400,
    methods: null,
    paths: null,
    createdAt: '2023-11-14T22:13:20.000Z',
  });
  const text = JSON.stringify(view);
  assert.equal(text.includes('current-secret-value-1'), false);
  assert.equal(text.includes('previous-secret-value-2'), false);
  assert.equal(text.includes('"secret"'), false);
});

test('channelView: no verification and no rotation', () => {
  assert.equal(channelView(sample(), 'http://localhost:8080').verify, null);
  const channel = parseNewChannel(
    { name: 'gh', verify: { provider: 'github', secret: 'only-one-secret' } },
    ID,
    NOW,
  );
  const view = channelView(channel, 'http://localhost:8080');
  assert.deepEqual(view['verify'], { provider: 'github', rotating: false });
  assert.equal(JSON.stringify(view).includes('only-one-secret'), false);
});

test('orderingKey and rateLimit: parsed, shown, and refused when wrong', () => {
  const channel = parseNewChannel(
    {
      name: 'orders',
      ordered: true,
      orderingKey: { jsonField: 'repository.full_name' },
      rateLimit: { perSecond: 50, burst: 100 },
    },
    ID,
    NOW,
  );
  assert.deepEqual(channel.orderingKey, { jsonField: 'repository.full_name' });
  assert.deepEqual(channel.rateLimit, { perSecond: 50, burst: 100 });
  const view = channelView(channel, 'http://localhost:8080');
  assert.deepEqual(view['orderingKey'], { jsonField: 'repository.full_name' });
  assert.deepEqual(view['rateLimit'], { perSecond: 50, burst: 100 });
  const byHeader = parseNewChannel(
    { name: 'h', ordered: true, orderingKey: { header: 'X-GitHub-Repo' } },
    ID,
    NOW,
  );
  assert.deepEqual(byHeader.orderingKey, { header: 'x-github-repo' });
  for (const [raw, field] of [
    [{ name: 'a', orderingKey: { header: 'x' } }, 'orderingKey'],
    [{ name: 'a', ordered: true, orderingKey: { header: 'bad header' } }, 'orderingKey'],
    [{ name: 'a', ordered: true, orderingKey: { jsonField: 'a..b' } }, 'orderingKey'],
    [{ name: 'a', ordered: true, orderingKey: { header: 'x', jsonField: 'y' } }, 'orderingKey'],
    [{ name: 'a', rateLimit: { perSecond: 0 } }, 'rateLimit.perSecond'],
    [{ name: 'a', rateLimit: { perSecond: 5, burst: -1 } }, 'rateLimit.burst'],
    [{ name: 'a', rateLimit: { perSecond: 5, every: 1 } }, 'rateLimit.every'],
  ] as const) {
    assert.throws(
      () => parseNewChannel(raw as unknown as Record<string, unknown>, ID, NOW),
      (err: unknown) => err instanceof PosternError && err.message.startsWith(`${field}: `),
      JSON.stringify(raw),
    );
  }
  const plain = parseNewChannel({ name: 'p', rateLimit: { perSecond: 7 } }, ID, NOW);
  assert.deepEqual(plain.rateLimit, { perSecond: 7, burst: 7 }, 'burst defaults to perSecond');
});

test('methods and paths: parsed, shown, patched and set back to null', () => {
  const channel = parseNewChannel(
    { name: 'gh', methods: ['POST', 'PUT'], paths: ['', '/push', '/github/*'] },
    ID,
    NOW,
  );
  const view = channelView(channel, 'http://localhost:8080');
  assert.deepEqual(view['methods'], ['POST', 'PUT']);
  assert.deepEqual(view['paths'], ['', '/push', '/github/*']);
  applyChannelPatch(channel, { methods: null });
  assert.equal(channel.methods, null);
  assert.deepEqual(channel.paths, ['', '/push', '/github/*'], 'paths untouched');
  applyChannelPatch(channel, { paths: null });
  assert.equal(channel.paths, null);
  // The longest path allowed, and the most of each.
  const most = parseNewChannel(
    {
      name: 'm',
      methods: Array.from({ length: 16 }, (_, i) => `M${'X'.repeat(i)}`),
      paths: [`/${'a'.repeat(255)}`, ...Array.from({ length: 63 }, (_, i) => `/p${i}/*`)],
    },
    ID,
    NOW,
  );
  assert.equal(most.methods?.length, 16);
  assert.equal(most.paths?.length, 64);
  // A refused patch changes nothing.
  const before = structuredClone(most);
  assert.throws(() => applyChannelPatch(most, { paths: ['/ok', '/../x'] }), PosternError);
  assert.deepEqual(most, before);
});
