import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channelOptions } from '../../server/cli/channel-options.ts';
import { ConfigError } from '../../shared/errors.ts';

test('every option maps to its channel field', () => {
  assert.deepEqual(
    channelOptions({
      verify: 'github',
      secret: 's3cret',
      'ordering-key': 'header:X-Repo',
      'sync-timeout-ms': '2500',
      'retry-delays': '100, 200,300',
      'rate-limit': '5/10',
      'max-body-bytes': '1024',
    }),
    {
      verify: { provider: 'github', secret: 's3cret' },
      orderingKey: { header: 'X-Repo' },
      ordered: true,
      response: { mode: 'sync', timeoutMs: 2500 },
      retry: { delaysMs: [100, 200, 300] },
      rateLimit: { perSecond: 5, burst: 10 },
      maxBodyBytes: 1024,
    },
  );
  assert.deepEqual(channelOptions({ 'ordering-key': 'json:a.b:c' }), {
    orderingKey: { jsonField: 'a.b:c' },
    ordered: true,
  });
  assert.deepEqual(channelOptions({ async: true, unordered: true, 'rate-limit': '7' }), {
    response: { mode: 'async' },
    ordered: false,
    rateLimit: { perSecond: 7 },
  });
  assert.deepEqual(channelOptions({}), {});
});

for (const [what, values, message] of [
  ['--verify without --secret', { verify: 'github' }, /--verify needs --secret-file/],
  [
    'an ordering key of no kind',
    { 'ordering-key': 'repo' },
    /--ordering-key: expected header:NAME or json:PATH/,
  ],
  [
    'a rate limit that is not a number',
    { 'rate-limit': 'fast' },
    /--rate-limit: expected a whole number, got "fast"/,
  ],
  [
    'a negative retry delay',
    { 'retry-delays': '100,-5' },
    /--retry-delays: expected a whole number, got "-5"/,
  ],
  [
    'a sync timeout in seconds',
    { 'sync-timeout-ms': '2.5' },
    /--sync-timeout-ms: expected a whole number/,
  ],
] as const) {
  test(`refused: ${what}`, () => {
    assert.throws(
      () => channelOptions(values),
      (err: unknown) => err instanceof ConfigError && message.test(err.message),
    );
  });
}

test('--methods and --paths map to methods and paths', () => {
  assert.deepEqual(channelOptions({ methods: 'POST,GET', paths: '/push,/github/*' }), {
    methods: ['POST', 'GET'],
    paths: ['/push', '/github/*'],
  });
  // Names are upper-cased and trimmed; the relay validates them.
  assert.deepEqual(channelOptions({ methods: ' post , put' }), { methods: ['POST', 'PUT'] });
  // An empty item is the empty suffix (a request to the bare ingress URL).
  assert.deepEqual(channelOptions({ paths: ',/push' }), { paths: ['', '/push'] });
  assert.deepEqual(channelOptions({ paths: '' }), { paths: [''] });
  // Back to the defaults: the provider's methods, any path.
  assert.deepEqual(channelOptions({ methods: 'default', paths: 'any' }), {
    methods: null,
    paths: null,
  });
});
