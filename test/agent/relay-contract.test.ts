/**
 * RelayContract as a pure unit: the window and the byte bound counted as the relay counts them
 * (a slot from `deliver` until the ack is sent), and the channels granted in `welcome`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RelayContract, type Slot } from '../../agent/relay-contract.ts';
import { ProtocolError } from '../../shared/errors.ts';
import { MAX_BODY_BYTES, MAX_INFLIGHT_BYTES } from '../../shared/protocol.ts';

const GITHUB = { id: 'ch_github01', name: 'github' };
const STRIPE = { id: 'ch_stripe01', name: 'stripe' };

function slot(result: Slot | ProtocolError): Slot {
  if (result instanceof ProtocolError) throw new Error(`refused: ${result.message}`);
  return result;
}

function breach(result: Slot | ProtocolError): ProtocolError {
  assert.ok(result instanceof ProtocolError, 'the relay broke its word and was told so');
  return result;
}

test('exactly `window` deliveries are admitted; one more is a breach; an ack frees one slot', () => {
  const c = new RelayContract({ window: 3, channels: [GITHUB] });
  const slots = [1, 2, 3].map(() => slot(c.admit(10, GITHUB)));
  assert.equal(c.inFlight, 3);
  assert.equal(c.inFlightBytes, 30);
  const err = breach(c.admit(10, GITHUB));
  assert.equal(err.code, 'ERR_PROTOCOL_WINDOW_EXCEEDED');
  assert.match(err.message, /^deliver beyond the window of 3: 3 already unacknowledged$/);
  assert.equal(c.inFlight, 3, 'a refused deliver takes no slot');
  slots[0]!.release();
  assert.equal(c.inFlight, 2);
  slot(c.admit(10, GITHUB));
  assert.equal(c.inFlight, 3);
});

test('release is counted once, however often it is called', () => {
  const c = new RelayContract({ window: 2, channels: [GITHUB] });
  const a = slot(c.admit(100, GITHUB));
  slot(c.admit(1, GITHUB));
  a.release();
  a.release();
  a.release();
  assert.equal(c.inFlight, 1);
  assert.equal(c.inFlightBytes, 1);
});

test('bytes: a deliver is admitted while fewer than MAX_INFLIGHT_BYTES are unacknowledged, as the relay sends', () => {
  const c = new RelayContract({ window: 100, channels: [GITHUB] });
  // The relay sends while its count is under the bound, so the last one may pass it by a body.
  slot(c.admit(MAX_INFLIGHT_BYTES - 1, GITHUB));
  const last = slot(c.admit(MAX_BODY_BYTES, GITHUB));
  assert.equal(c.inFlightBytes, MAX_INFLIGHT_BYTES - 1 + MAX_BODY_BYTES);
  const err = breach(c.admit(0, GITHUB));
  assert.equal(err.code, 'ERR_PROTOCOL_WINDOW_EXCEEDED');
  assert.match(err.message, new RegExp(`beyond ${MAX_INFLIGHT_BYTES} unacknowledged body bytes`));
  last.release();
  slot(c.admit(0, GITHUB));
});

test('a channel not granted, or granted under another name, is a breach', () => {
  const c = new RelayContract({ window: 10, channels: [GITHUB, STRIPE] });
  slot(c.admit(0, GITHUB));
  slot(c.admit(0, STRIPE));
  for (const channel of [
    { id: 'ch_other', name: 'other' },
    { id: GITHUB.id, name: 'stripe' },
    { id: STRIPE.id, name: 'STRIPE' },
    { id: 'github', name: 'github' },
  ]) {
    const err = breach(c.admit(0, channel));
    assert.equal(err.code, 'ERR_PROTOCOL_CHANNEL_NOT_GRANTED');
    assert.ok(err.message.includes(JSON.stringify(channel.id)), err.message);
  }
  assert.equal(c.inFlight, 2);
});

test('a refused deliver (no readable channel) still takes a slot and honours the window', () => {
  const c = new RelayContract({ window: 1, channels: [] });
  const s = slot(c.admit(5, null));
  assert.equal(c.inFlight, 1);
  breach(c.admit(5, null));
  s.release();
  assert.equal(c.inFlight, 0);
});
