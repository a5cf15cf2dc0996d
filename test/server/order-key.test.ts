import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNewChannel } from '../../server/channels.ts';
import { MAX_KEYED_BODY_BYTES, orderKeyOf } from '../../server/http/order-key.ts';

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

test('a JSON body up to MAX_KEYED_BODY_BYTES is parsed for its key; a larger one is not', () => {
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
