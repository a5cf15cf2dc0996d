import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventIdGenerator, randomId } from '../../server/ids.ts';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const EVENT_ID = /^evt_[0-9a-hjkmnp-tv-z]{26}$/;

/** Decodes the 26 base32 characters back to 130 bits, as a string of 0s and 1s. */
function bits(id: string): string {
  const body = id.slice(id.indexOf('_') + 1);
  let out = '';
  for (const c of body) {
    const v = ALPHABET.indexOf(c);
    assert.ok(v >= 0, `"${c}" is not in the alphabet`);
    out += v.toString(2).padStart(5, '0');
  }
  return out;
}

test('event ids are evt_ and 26 Crockford base32 characters', () => {
  const next = eventIdGenerator();
  for (let i = 0; i < 100; i++) assert.match(next(), EVENT_ID);
});

test('100,000 event ids from one generator are strictly increasing (real clock)', () => {
  const next = eventIdGenerator();
  let previous = next();
  let out = 0;
  for (let i = 0; i < 100_000; i++) {
    const id = next();
    if (!(id > previous)) out++;
    previous = id;
  }
  assert.equal(out, 0, `${out} ids did not sort after the one before`);
});

test('100,000 event ids within one millisecond are strictly increasing and distinct', () => {
  const next = eventIdGenerator(() => 1_700_000_000_000);
  const ids: string[] = [];
  for (let i = 0; i < 100_000; i++) ids.push(next());
  let out = 0;
  for (let i = 1; i < ids.length; i++) if (!(ids[i]! > ids[i - 1]!)) out++;
  assert.equal(out, 0);
  assert.equal(new Set(ids).size, 100_000);
  // Consecutive ids in one millisecond differ by exactly one in the 80-bit random part.
  const a = BigInt(`0b${bits(ids[0]!).slice(0, 128)}`);
  const b = BigInt(`0b${bits(ids[1]!).slice(0, 128)}`);
  assert.equal(b - a, 1n);
});

test('a clock that goes backwards still gives increasing ids', () => {
  const times = [2_000, 1_000, 1_000, 500, 2_000, 2_001];
  let i = 0;
  const next = eventIdGenerator(() => times[i++]!);
  const ids = times.map(() => next());
  for (let k = 1; k < ids.length; k++) assert.ok(ids[k]! > ids[k - 1]!, `id ${k} went back`);
});

test('the first 48 bits of an event id are its millisecond timestamp', () => {
  const t = 1_700_000_123_456;
  const id = eventIdGenerator(() => t)();
  assert.equal(Number(BigInt(`0b${bits(id).slice(0, 48)}`)), t);
  // The 2 bits past 128 are padding.
  assert.equal(bits(id).slice(128), '00');
});

test('ids of a later millisecond sort after ids of an earlier one, across generators', () => {
  for (let i = 0; i < 1_000; i++) {
    const early = eventIdGenerator(() => 1_700_000_000_000 + i)();
    const late = eventIdGenerator(() => 1_700_000_000_001 + i)();
    assert.ok(late > early, `${late} <= ${early}`);
  }
});

test('randomId: prefix and 26 base32 characters carrying exactly 128 random bits', () => {
  for (const prefix of ['ch', 'ag', 'ses'] as const) {
    const id = randomId(prefix);
    assert.match(id, new RegExp(`^${prefix}_[0-9a-hjkmnp-tv-z]{26}$`));
    assert.equal(bits(id).slice(128), '00');
  }
});

test('randomId values do not repeat and use every bit', () => {
  const ids = Array.from({ length: 10_000 }, () => randomId('ch'));
  assert.equal(new Set(ids).size, 10_000);
  // Each of the 128 bit positions is set in some id and clear in another.
  const ones = new Array<number>(128).fill(0);
  for (const id of ids) {
    const b = bits(id);
    for (let i = 0; i < 128; i++) if (b[i] === '1') ones[i]!++;
  }
  const stuck = ones.filter((n) => n === 0 || n === ids.length).length;
  assert.equal(stuck, 0);
});
