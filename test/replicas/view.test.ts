/**
 * Any relay answers any request with the same view (issue #13, item 1): two relays on one
 * database; what is made or accepted through one is seen through the other (admin API, the
 * live stream, /metrics), and an agent on one delivers what the other accepted.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  listEvents,
  pairAgent,
  removeDir,
  startAgent,
  type AgentHandle,
} from '../helpers/processes.ts';
import { eventGauges, post, startReplicas, type Replicas } from './support.ts';

const N = 20;
let replicas: Replicas;
let app: TestApp;
let agent: AgentHandle | undefined;
let stateDir = '';

before(async () => {
  app = await startApp();
  replicas = await startReplicas(2);
});

after(async () => {
  await agent?.stop();
  await replicas?.close();
  await app?.close();
  if (stateDir) await removeDir(stateDir);
});

/** Reads `/api/stream` of a relay and keeps the last status seen of each event id. */
async function follow(url: string, token: string) {
  const controller = new AbortController();
  const res = await fetch(`${url}/api/stream`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  assert.equal(res.status, 200);
  const seen = new Map<string, Set<string>>();
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of res.body!) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!data) continue;
          const e = JSON.parse(data) as { id: string; status: string };
          if (!seen.has(e.id)) seen.set(e.id, new Set());
          seen.get(e.id)!.add(e.status);
        }
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  return {
    seen,
    stop: async () => {
      controller.abort();
      await reading;
    },
  };
}

test('a channel, an agent and events made through one relay are the same through the other', async () => {
  const [a, b] = replicas.relays as [(typeof replicas.relays)[0], (typeof replicas.relays)[0]];
  const channel = await a.api('POST', '/api/channels', { name: 'shared-view' });
  const onB = await eventually(
    async () =>
      (await b.api('GET', '/api/channels')).channels.find((c: any) => c.id === channel.id),
    5_000,
    'the channel on relay B',
  );
  assert.equal(onB.name, 'shared-view');

  // Added through A, paired and connected through B only.
  const paired = await pairAgent(a, [channel.id], 'agent-on-b', b.url);
  stateDir = paired.stateDir;
  agent = await startAgent(stateDir, [{ channel: 'shared-view', target: app.url }]);
  const shown = await eventually(
    async () => {
      const list = (await a.api('GET', '/api/agents')).agents;
      const mine = list.find((x: any) => x.id === paired.agentId);
      return mine?.connected === true ? mine : undefined;
    },
    10_000,
    'relay A to show the agent on B as connected',
  );
  assert.equal(shown.paired, true);

  const streamB = await follow(b.url, b.token);
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const res = await post(a, channel.id, `event ${i}`);
    assert.equal(res.status, 202, res.text);
    ids.push((JSON.parse(res.text) as { id: string }).id);
  }
  // Accepted by A, delivered through the agent on B.
  await app.waitFor(N, 30_000);
  const bodies = new Set(app.received.map((r) => r.body.toString()));
  assert.equal(bodies.size, N, 'every event delivered, none twice');
  for (const relay of [a, b]) {
    const events = await eventually(
      async () => {
        const list = await listEvents<{ id: string; status: string }>(relay, channel.id);
        return list.filter((e) => e.status === 'delivered').length === N ? list : undefined;
      },
      10_000,
      `${N} delivered events listed by ${relay.url}`,
    );
    assert.deepEqual(events.map((e) => e.id).sort(), [...ids].sort());
  }
  // B's live stream showed every event A accepted, up to its delivery.
  await eventually(
    () => (ids.every((id) => streamB.seen.get(id)?.has('delivered')) ? true : undefined),
    10_000,
    'every event delivered on the stream of relay B',
  );
  await streamB.stop();
  // /metrics: the same counts from the store, whichever relay is asked.
  for (const relay of [a, b]) {
    const gauges = await eventually(
      async () => {
        const g = await eventGauges(relay);
        return g['delivered'] === N ? g : undefined;
      },
      10_000,
      `/metrics of ${relay.url} to count ${N} delivered`,
    );
    assert.equal(gauges['queued'], 0);
    assert.equal(gauges['delivering'], 0);
  }

  // The agent goes away: relay A no longer shows it connected.
  await agent.stop();
  agent = undefined;
  await eventually(
    async () => {
      const list = (await a.api('GET', '/api/agents')).agents;
      return list.find((x: any) => x.id === paired.agentId)?.connected === false ? true : undefined;
    },
    10_000,
    'relay A to show the agent disconnected',
  );
});
