/**
 * What a relay does about a control change, whichever relay made it (server/control-changes.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reactToControlChange } from '../../server/control-changes.ts';
import { parseNewChannel } from '../../server/channels.ts';
import { emptyControl } from '../../server/store/control-state.ts';
import type { AgentRecord, ControlState } from '../../server/store/types.ts';

const KEY = (x: string) => ({ kty: 'OKP' as const, crv: 'Ed25519' as const, x: x.padEnd(43, 'A') });

function agent(id: string, channels: string[], key: string | null = 'k1'): AgentRecord {
  return {
    id,
    name: id,
    channels,
    publicKey: key === null ? null : KEY(key),
    createdAt: 1,
    pairedAt: key === null ? null : 2,
    lastSeenAt: null,
    version: null,
  };
}

function state(agents: AgentRecord[], names: Record<string, string> = {}): ControlState {
  const s = emptyControl();
  for (const id of ['ch_a', 'ch_b']) {
    if (names[id] === '') continue;
    s.channels.push(parseNewChannel({ name: names[id] ?? id }, id, 1));
  }
  s.agents = agents;
  return s;
}

function react(before: ControlState, after: ControlState): string[] {
  const done: string[] = [];
  reactToControlChange(before, after, {
    closeAgent: (id, why, reason) => done.push(`close ${id} ${why}: ${reason}`),
    channelChanged: (id) => done.push(`changed ${id}`),
    channelRemoved: (id) => done.push(`removed ${id}`),
  });
  return done;
}

test('an agent removed or paired again loses its tunnels; a first pairing closes nothing', () => {
  assert.deepEqual(react(state([agent('ag_1', ['ch_a'])]), state([])), [
    'close ag_1 revoked: agent revoked',
  ]);
  assert.deepEqual(
    react(state([agent('ag_1', ['ch_a'], 'k1')]), state([agent('ag_1', ['ch_a'], 'k2')])),
    ['close ag_1 revoked: agent re-paired'],
  );
  assert.deepEqual(
    react(state([agent('ag_1', ['ch_a'], null)]), state([agent('ag_1', ['ch_a'], 'k1')])),
    [],
  );
});

test('changed grants and a renamed channel reconnect the agents concerned', () => {
  assert.deepEqual(
    react(state([agent('ag_1', ['ch_a'])]), state([agent('ag_1', ['ch_a', 'ch_b'])])),
    ['close ag_1 reconnect: channel grants changed; reconnect'],
  );
  assert.deepEqual(
    react(
      state([agent('ag_1', ['ch_a']), agent('ag_2', ['ch_b'])]),
      state([agent('ag_1', ['ch_a']), agent('ag_2', ['ch_b'])], { ch_b: 'renamed' }),
    ),
    ['changed ch_b', 'close ag_2 reconnect: channel renamed; reconnect'],
  );
});

test('a deleted channel is forgotten; its agents keep their tunnels', () => {
  assert.deepEqual(
    react(state([agent('ag_1', ['ch_a', 'ch_b'])]), state([agent('ag_1', ['ch_a'])], { ch_b: '' })),
    ['removed ch_b'],
  );
});

test('unchanged state does nothing; a setting changed tells dispatch', () => {
  const before = state([agent('ag_1', ['ch_a'])]);
  assert.deepEqual(react(before, structuredClone(before)), []);
  const after = structuredClone(before);
  after.channels[0]!.ordered = true;
  assert.deepEqual(react(before, after), ['changed ch_a']);
});
