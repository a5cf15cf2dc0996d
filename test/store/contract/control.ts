/**
 * The control state: read and update round trip, serialized updates, a failing change, copies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlState } from '../../../server/store/types.ts';
import { START, agent, channel, fresh, type Backend } from './support.ts';

export function controlTests(backend: Backend): void {
  test('control: readControl and updateControl round trip, as copies', async (t) => {
    const { store } = await fresh(t, backend);
    const initial = await store.readControl();
    assert.deepEqual(initial.channels, []);
    assert.deepEqual(initial.agents, []);
    assert.deepEqual(initial.pairings, []);

    const github = channel('ch_gh', {
      verify: { provider: 'github', secret: 's3cret', previousSecret: 'old' },
      ordered: true,
      orderingKey: { jsonField: 'repository.full_name' },
      rateLimit: { perSecond: 10, burst: 20 },
      methods: ['POST'],
      paths: ['', '/push', '/github/*'],
    });
    const updated = await store.updateControl((state) => {
      state.adminTokenHash = 'ab'.repeat(32);
      state.channels.push(github, channel('ch_plain'));
      state.agents.push(agent('ag_1', ['ch_gh']));
      state.pairings.push({
        codeHash: 'cd'.repeat(32),
        agentId: 'ag_1',
        expiresAt: START + 600_000,
      });
      state.usedTokenIds.push({ key: 'ag_1:jti-1', until: START / 1000 + 60 });
    });
    const expected: ControlState = {
      ...initial,
      adminTokenHash: 'ab'.repeat(32),
      channels: [github, channel('ch_plain')],
      agents: [agent('ag_1', ['ch_gh'])],
      pairings: [{ codeHash: 'cd'.repeat(32), agentId: 'ag_1', expiresAt: START + 600_000 }],
      usedTokenIds: [...initial.usedTokenIds, { key: 'ag_1:jti-1', until: START / 1000 + 60 }],
    };
    assert.deepEqual(updated, expected);
    assert.deepEqual(await store.readControl(), expected);

    // Returned states are copies.
    updated.channels.pop();
    updated.adminTokenHash = null;
    const read = await store.readControl();
    read.agents[0]?.channels.push('ch_plain');
    read.channels.splice(0);
    assert.deepEqual(await store.readControl(), expected);

    // A change sees the state as stored.
    await store.updateControl((state) => {
      assert.deepEqual(state, expected);
      state.agents = [];
    });
    assert.deepEqual((await store.readControl()).agents, []);
  });

  test('control: concurrent updateControl calls are serialized, none is lost', async (t) => {
    const { store } = await fresh(t, backend);
    const n = 25;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        store.updateControl((state) => {
          state.agents.push(agent(`ag_${i}`));
        }),
      ),
    );
    const final = await store.readControl();
    assert.equal(final.agents.length, n);
    assert.deepEqual(
      final.agents.map((a) => a.id).sort(),
      Array.from({ length: n }, (_, i) => `ag_${i}`).sort(),
    );
    // Each change saw every earlier one: the states returned grow one agent at a time.
    assert.deepEqual(
      results.map((s) => s.agents.length).sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i + 1),
    );
  });

  test('control: a change that throws changes nothing and its error is thrown', async (t) => {
    const { store } = await fresh(t, backend);
    await store.updateControl((state) => {
      state.channels.push(channel('ch_1'));
    });
    const before = await store.readControl();
    const boom = new Error('refused by the change');
    await assert.rejects(
      store.updateControl((state) => {
        state.channels.push(channel('ch_2'));
        for (const c of state.channels) c.name = 'renamed';
        state.adminTokenHash = 'ff'.repeat(32);
        throw boom;
      }),
      (err: unknown) => err === boom,
    );
    assert.deepEqual(await store.readControl(), before);
    // The next change starts from the stored state, not from the failed one.
    const after = await store.updateControl((state) => {
      assert.deepEqual(state, before);
      state.agents.push(agent('ag_1'));
    });
    assert.deepEqual(after.channels, before.channels);
    assert.equal(after.agents.length, before.agents.length + 1);
  });
}
