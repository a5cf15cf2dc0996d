/**
 * Fencing across relays (issue #13, item 2): relay B claims events and is stopped (SIGSTOP)
 * for longer than its lease while its agent's app holds them; relay A claims them when the
 * lease ends and delivers them through its own agent. When B runs again (SIGCONT) the late
 * acks of its old claims are refused: each event is recorded delivered once, by A's agent.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { post, startReplicas, type Replicas } from './support.ts';

const N = 5;
let replicas: Replicas;
let app: TestApp;
const agents: AgentHandle[] = [];
const dirs: string[] = [];

before(async () => {
  app = await startApp();
  replicas = await startReplicas(1);
  // B: a short lease, and heartbeats slow enough that its agent keeps the tunnel while B is
  // stopped (so that the late acks do reach it).
  await replicas.add({ extraArgs: ['--lease-ms', '2000', '--heartbeat-ms', '60000'] });
});

after(async () => {
  for (const a of agents) await a.stop();
  await replicas?.close();
  await app?.close();
  for (const d of dirs) await removeDir(d);
});

test('a late ack from a relay whose lease passed is refused; the other relay delivered', async (t) => {
  const [a, b] = replicas.relays as [RelayHandle, RelayHandle];
  const channel = await a.api('POST', '/api/channels', { name: 'fenced' });
  const onB = await pairAgent(a, [channel.id], 'agent-on-b', b.url);
  dirs.push(onB.stateDir);
  const onA = await pairAgent(a, [channel.id], 'agent-on-a', a.url);
  dirs.push(onA.stateDir);

  // The app holds what comes first (through B), and answers the rest at once.
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const held = new Set<string>();
  app.respond = async (req, res) => {
    const id = String(req.headers['x-postern-event-id']);
    if (held.size < N && !held.has(id)) {
      held.add(id);
      await released;
    }
    res.end('ok');
  };
  agents.push(await startAgent(onB.stateDir, [{ channel: 'fenced', target: app.url }]));
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const res = await post(a, channel.id, `fenced ${i}`);
    assert.equal(res.status, 202, res.text);
    ids.push((JSON.parse(res.text) as { id: string }).id);
  }
  await app.waitFor(N);
  for (const id of ids)
    assert.equal((await a.api('GET', `/api/events/${id}`)).status, 'delivering');

  b.proc.child.kill('SIGSTOP');
  t.after(() => void b.proc.child.kill('SIGCONT'));
  // A's agent connects; A claims the events once B's lease has run out, and delivers them.
  agents.push(await startAgent(onA.stateDir, [{ channel: 'fenced', target: app.url }]));
  for (const id of ids) {
    const e = await waitForEventStatus(a, id, 'delivered', 30_000);
    assert.equal(e.attemptCount, 1);
    assert.deepEqual(
      e.attempts.map((x: { agentId: string; outcome: string }) => [x.agentId, x.outcome]),
      [[onA.agentId, 'delivered']],
    );
  }

  // B's agent now gets the app's answers and acks to B, which runs again.
  const from = b.proc.lines.length;
  release();
  b.proc.child.kill('SIGCONT');
  const refused = new Set<string>();
  await eventually(
    () => {
      for (const l of b.proc.lines.slice(from)) {
        if (String(l.msg).startsWith('outcome of a claim that no longer holds')) {
          refused.add(String(l['eventId']));
        }
      }
      return refused.size === N ? true : undefined;
    },
    20_000,
    `relay B to refuse ${N} late acks`,
  );
  assert.deepEqual([...refused].sort(), [...ids].sort());

  // Nothing changed by them: each event delivered once as recorded, by A's agent.
  for (const id of ids) {
    const e = await b.api('GET', `/api/events/${id}`);
    assert.equal(e.status, 'delivered');
    assert.equal(e.attemptCount, 1);
    assert.equal(e.attempts[0].agentId, onA.agentId);
  }
  // Counts: N accepted, N delivered, 0 lost; the app saw each twice (the stalled relay's
  // delivery and the other's: at least once).
  const byId = new Map<string, number>();
  for (const r of app.received) {
    const id = String(r.headers['x-postern-event-id']);
    byId.set(id, (byId.get(id) ?? 0) + 1);
  }
  t.diagnostic(
    `${N} accepted, ${ids.filter((id) => byId.has(id)).length} delivered, ${app.received.length - byId.size} duplicates`,
  );
  assert.deepEqual(
    ids.map((id) => byId.get(id)),
    Array<number>(N).fill(2),
  );
  assert.equal(app.received.length, 2 * N);
});
