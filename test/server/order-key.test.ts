import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNewChannel } from '../../server/channels.ts';
import { orderKeyOf } from '../../server/http/order-key.ts';
import { JSON_LOOKUP_LIMITS } from '../../shared/bounded-json.ts';

const MAX_KEYED_BODY_BYTES = JSON_LOOKUP_LIMITS.maxBytes;

const keyed = parseNewChannel(
  { name: 'o', ordered: true, orderingKey: { jsonField: 'repository.full_name' } },
  'ch_0123456789abcdefghjkmnpqrs',
  0,
);

/** A JSON body of exactly `size` bytes whose key is `octo/app`. */
function bodyOf(size: number): Buffer {
  const head = '{"repository":{"full_name":"octo/app"},"pad":"';
  const tail = '"}';
  return Buffer.from(head + 'x'.repeat(size - head.length - tail.length) + tail);
}

test('a JSON body up to 1 MiB is parsed for its key; a larger one is not', () => {
  assert.equal(MAX_KEYED_BODY_BYTES, 1_048_576);
  assert.equal(bodyOf(MAX_KEYED_BODY_BYTES).length, MAX_KEYED_BODY_BYTES);
  assert.equal(orderKeyOf(keyed, [], bodyOf(MAX_KEYED_BODY_BYTES)), 'octo/app');
  assert.equal(orderKeyOf(keyed, [], bodyOf(MAX_KEYED_BODY_BYTES + 1)), '', 'the empty key');
});

test('a header key does not depend on the body size', () => {
  const byHeader = parseNewChannel(
    { name: 'h', ordered: true, orderingKey: { header: 'X-Repo' } },
    'ch_0123456789abcdefghjkmnpqrs',
    0,
  );
  assert.equal(
    orderKeyOf(byHeader, [['x-repo', 'octo/app']], bodyOf(MAX_KEYED_BODY_BYTES + 1)),
    'octo/app',
  );
});

test('a body nested deeper than 64 levels is not parsed for its key', () => {
  const nest = (depth: number) =>
    Buffer.from(
      `{"repository":{"full_name":"octo/app"},"pad":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`,
    );
  assert.equal(orderKeyOf(keyed, [], nest(JSON_LOOKUP_LIMITS.maxDepth)), 'octo/app');
  assert.equal(orderKeyOf(keyed, [], nest(JSON_LOOKUP_LIMITS.maxDepth + 1)), '');
});
