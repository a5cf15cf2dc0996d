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
  const slots = [1, 2, 3].map(() => slot(c.admit(10, GITHUB.id)));
  assert.equal(c.inFlight, 3);
  assert.equal(c.inFlightBytes, 30);
  const err = breach(c.admit(10, GITHUB.id));
  assert.equal(err.code, 'ERR_PROTOCOL_WINDOW_EXCEEDED');
  assert.match(err.message, /^deliver beyond the window of 3: 3 already unacknowledged$/);
  assert.equal(c.inFlight, 3, 'a refused deliver takes no slot');
  slots[0]!.release();
  assert.equal(c.inFlight, 2);
  slot(c.admit(10, GITHUB.id));
  assert.equal(c.inFlight, 3);
});

test('release is counted once, however often it is called', () => {
  const c = new RelayContract({ window: 2, channels: [GITHUB] });
  const a = slot(c.admit(100, GITHUB.id));
  slot(c.admit(1, GITHUB.id));
  a.release();
  a.release();
  a.release();
  assert.equal(c.inFlight, 1);
  assert.equal(c.inFlightBytes, 1);
});

test('bytes: a deliver is admitted while fewer than MAX_INFLIGHT_BYTES are unacknowledged, as the relay sends', () => {
  const c = new RelayContract({ window: 100, channels: [GITHUB] });
  // The relay sends while its count is under the bound, so the last one may pass it by a body.
  slot(c.admit(MAX_INFLIGHT_BYTES - 1, GITHUB.id));
  const last = slot(c.admit(MAX_BODY_BYTES, GITHUB.id));
  assert.equal(c.inFlightBytes, MAX_INFLIGHT_BYTES - 1 + MAX_BODY_BYTES);
  const err = breach(c.admit(0, GITHUB.id));
  assert.equal(err.code, 'ERR_PROTOCOL_WINDOW_EXCEEDED');
  assert.match(err.message, new RegExp(`beyond ${MAX_INFLIGHT_BYTES} unacknowledged body bytes`));
  last.release();
  slot(c.admit(0, GITHUB.id));
});

test('a channel id not granted is a breach; a granted one is known by its granted name', () => {
  const c = new RelayContract({ window: 10, channels: [GITHUB, STRIPE] });
  slot(c.admit(0, GITHUB.id));
  slot(c.admit(0, STRIPE.id));
  // Names are not ids: a relay cannot reach a channel by naming it.
  for (const id of ['ch_other', 'github', 'stripe', 'CH_GITHUB01']) {
    const err = breach(c.admit(0, id));
    assert.equal(err.code, 'ERR_PROTOCOL_CHANNEL_NOT_GRANTED');
    assert.equal(err.message, `deliver for channel "${id}", which the welcome did not grant`);
  }
  assert.equal(c.inFlight, 2);
  assert.equal(c.grantedName(GITHUB.id), 'github');
  assert.equal(c.grantedName(STRIPE.id), 'stripe');
  assert.equal(c.grantedName('github'), undefined);
});

test('a refused deliver (no readable channel) still takes a slot and honours the window', () => {
  const c = new RelayContract({ window: 1, channels: [] });
  const s = slot(c.admit(5, null));
  assert.equal(c.inFlight, 1);
  breach(c.admit(5, null));
  s.release();
  assert.equal(c.inFlight, 0);
});
