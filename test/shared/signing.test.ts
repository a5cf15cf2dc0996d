import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import {
  constantTimeEqual,
  constantTimeEqualString,
  hmac,
  standardWebhooksSignature,
} from '../../shared/signing.ts';

test('constantTimeEqual: equal bytes', () => {
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
  assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  assert.equal(constantTimeEqual(new Uint8Array([0, 255]), Buffer.from([0, 255])), true);
});

test('constantTimeEqual: different bytes of the same length', () => {
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd')), false);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('Abc')), false);
  assert.equal(constantTimeEqual(Buffer.from([0]), Buffer.from([1])), false);
});

test('constantTimeEqual: different lengths are unequal and do not throw', () => {
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abcd')), false);
  assert.equal(constantTimeEqual(Buffer.from('abcd'), Buffer.from('abc')), false);
  assert.equal(constantTimeEqual(Buffer.from(''), Buffer.from('a')), false);
});

test('constantTimeEqualString compares UTF-8 bytes', () => {
  assert.equal(constantTimeEqualString('é', 'é'), true);
  assert.equal(constantTimeEqualString('é', 'e\u0301'), false);
  assert.equal(constantTimeEqualString('token', 'token '), false);
});

test('hmac: the GitHub example vector', () => {
  assert.equal(
    hmac('sha256', "It's a Secret to Everybody", 'Hello, World!').toString('hex'),
    '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
  );
});

test('hmac: parts are concatenated, and bytes are not re-encoded', () => {
  const body = Buffer.from([0xff, 0x00, 0x80]);
  const expected = createHmac('sha512', 'k').update('a.b.').update(body).digest();
  assert.deepEqual(hmac('sha512', 'k', 'a.', 'b.', body), expected);
  assert.deepEqual(
    hmac('sha1', Buffer.from('k'), 'x'),
    createHmac('sha1', 'k').update('x').digest(),
  );
});

const SW = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

test('standardWebhooksSignature: the Standard Webhooks example vector', () => {
  assert.equal(
    standardWebhooksSignature(SW.secret, SW.id, SW.timestamp, Buffer.from(SW.body)),
    SW.signature,
  );
});

test('standardWebhooksSignature: the whsec_ prefix is optional, the key is base64', () => {
  const bare = SW.secret.slice('whsec_'.length);
  assert.equal(
    standardWebhooksSignature(bare, SW.id, SW.timestamp, Buffer.from(SW.body)),
    SW.signature,
  );
});

test('standardWebhooksSignature: id, timestamp and body are all signed', () => {
  const body = Buffer.from(SW.body);
  const variants = [
    standardWebhooksSignature(SW.secret, 'msg_other', SW.timestamp, body),
    standardWebhooksSignature(SW.secret, SW.id, SW.timestamp + 1, body),
    standardWebhooksSignature(SW.secret, SW.id, SW.timestamp, Buffer.from('{"test": 2432232315}')),
    standardWebhooksSignature('whsec_AAAAAAAAAAAAAAAAAAAAAAAA', SW.id, SW.timestamp, body),
  ];
  for (const v of variants) {
    assert.match(v, /^v1,[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(v, SW.signature);
  }
  assert.equal(new Set(variants).size, variants.length);
});

test('standardWebhooksSignature signs raw body bytes (not UTF-8 re-encoded)', () => {
  const body = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
  const key = Buffer.from(SW.secret.slice(6), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${SW.id}.${SW.timestamp}.`)
    .update(body)
    .digest('base64');
  assert.equal(standardWebhooksSignature(SW.secret, SW.id, SW.timestamp, body), `v1,${expected}`);
});
