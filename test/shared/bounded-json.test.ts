/**
 * parseJsonBounded: parses within a byte and a nesting bound, never throws, and counts only the
 * brackets that open containers (not those inside strings, escaped quotes included).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  JSON_LOOKUP_LIMITS,
  depthWithin,
  parseJsonBounded,
  type BoundedJson,
} from '../../shared/bounded-json.ts';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');
const LIMITS = { maxBytes: 1000, maxDepth: 3 };

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

test('the lookup limits are 1 MiB and 64 levels', () => {
  assert.deepEqual({ ...JSON_LOOKUP_LIMITS }, { maxBytes: 1024 * 1024, maxDepth: 64 });
  assert.ok(Object.isFrozen(JSON_LOOKUP_LIMITS));
});

test('a small body parses to its value', () => {
  const r = parseJsonBounded(bytes('{"type":"invoice.paid","data":{"n":[1,2]}}'), LIMITS);
  assert.deepEqual(r, { ok: true, value: { type: 'invoice.paid', data: { n: [1, 2] } } });
});

test('exactly maxBytes parses; one byte more is too_large', () => {
  const at = `"${'a'.repeat(LIMITS.maxBytes - 2)}"`;
  assert.equal(at.length, LIMITS.maxBytes);
  assert.deepEqual(parseJsonBounded(bytes(at), LIMITS), { ok: true, value: 'a'.repeat(998) });
  const over = `"${'a'.repeat(LIMITS.maxBytes - 1)}"`;
  assert.deepEqual(parseJsonBounded(bytes(over), LIMITS), { ok: false, reason: 'too_large' });
});

test('exactly maxDepth levels parse; one more is too_deep (arrays and objects alike)', () => {
  assert.deepEqual(parseJsonBounded(bytes(nested(3)), LIMITS), { ok: true, value: [[[]]] });
  assert.deepEqual(parseJsonBounded(bytes(nested(4)), LIMITS), { ok: false, reason: 'too_deep' });
  const objects = '{"a":{"b":{"c":1}}}';
  assert.equal(parseJsonBounded(bytes(objects), LIMITS).ok, true);
  const mixed = '{"a":[{"b":[1]}]}';
  assert.deepEqual(parseJsonBounded(bytes(mixed), LIMITS), { ok: false, reason: 'too_deep' });
});

test('siblings do not add up: depth is nesting, not the number of containers', () => {
  const wide = `[${Array.from({ length: 100 }, () => '[[]]').join(',')}]`;
  assert.equal(parseJsonBounded(bytes(wide), LIMITS).ok, true);
});

test('brackets inside strings do not count, escaped quotes included', () => {
  const inString = `{"a":"${'['.repeat(50)}{{{"}`;
  assert.deepEqual(parseJsonBounded(bytes(inString), { maxBytes: 1000, maxDepth: 1 }), {
    ok: true,
    value: { a: `${'['.repeat(50)}{{{` },
  });
  // \" does not end the string: the brackets after it are still inside.
  const escapedQuote = '{"a":"\\"[[[["}';
  assert.deepEqual(parseJsonBounded(bytes(escapedQuote), { maxBytes: 1000, maxDepth: 1 }), {
    ok: true,
    value: { a: '"[[[[' },
  });
});

test('an escaped backslash ends its escape: brackets after the string count again', () => {
  // The string is one backslash; then four levels of arrays follow, outside any string.
  const text = `{"a":"\\\\","b":${nested(3)}}`;
  assert.deepEqual(JSON.parse(text), { a: '\\', b: [[[]]] });
  assert.deepEqual(parseJsonBounded(bytes(text), LIMITS), { ok: false, reason: 'too_deep' });
  assert.equal(parseJsonBounded(bytes(text), { maxBytes: 1000, maxDepth: 4 }).ok, true);
});

test('what is not JSON is invalid, never a throw', () => {
  const cases = ['', '{', '{"a":1}}', 'nope', '\uFEFF{}', '[1,]'];
  for (const text of cases) {
    assert.deepEqual(parseJsonBounded(bytes(text), LIMITS), { ok: false, reason: 'invalid' }, text);
  }
});

test('invalid UTF-8 inside a string decodes as U+FFFD, as Buffer#toString does', () => {
  const body = Buffer.concat([bytes('{"a":"'), Buffer.from([0xff, 0xfe]), bytes('"}')]);
  assert.deepEqual(parseJsonBounded(body, LIMITS), { ok: true, value: { a: '\uFFFD\uFFFD' } });
});

test('a view into a larger buffer reads only its own bytes', () => {
  const whole = bytes('xxx{"k":"v"}yyy');
  const view = new Uint8Array(whole.buffer, whole.byteOffset + 3, 9);
  assert.deepEqual(parseJsonBounded(view, LIMITS), { ok: true, value: { k: 'v' } });
});

test('a 10 MB nest of brackets is refused without being parsed', () => {
  const depth = 5_000_000;
  const body = Buffer.alloc(depth * 2, '[');
  body.fill(']', depth);
  const before = process.memoryUsage().heapUsed;
  const r: BoundedJson = parseJsonBounded(body, JSON_LOOKUP_LIMITS);
  assert.deepEqual(r, { ok: false, reason: 'too_large' });
  // Under the byte bound but too deep: the pre-scan stops at level 65.
  const small = body.subarray(depth - 100_000, depth + 100_000);
  assert.deepEqual(parseJsonBounded(small, JSON_LOOKUP_LIMITS), { ok: false, reason: 'too_deep' });
  assert.ok(process.memoryUsage().heapUsed - before < 16 * 1024 * 1024, 'nothing was built');
});

test('depthWithin: exact boundary and unbalanced input', () => {
  assert.equal(depthWithin(bytes(nested(64)), 64), true);
  assert.equal(depthWithin(bytes(nested(65)), 64), false);
  assert.equal(depthWithin(bytes(']]]][[['), 3), true);
  assert.equal(depthWithin(bytes(''), 0), true);
  assert.equal(depthWithin(bytes('[]'), 0), false);
});
