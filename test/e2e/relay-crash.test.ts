/**
 * kill -9 of the relay in the middle of a burst: every webhook that was answered 202 reaches
 * the app after the relay restarts on the same data dir and port (the agent reconnects by
 * itself), with the body that was sent; duplicates only ever carry the same event id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import { Agent, request } from 'undici';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  listEvents,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

interface EventView {
  id: string;
  status: string;
}

const SENT = 1_200;
const IN_FLIGHT = 100;
const KILL_AFTER_ACKS = 400;

const relays: RelayHandle[] = [];
let agent: AgentHandle | undefined;
let app: TestApp | undefined;
let stateDir: string | undefined;
/** Made here, not by startRelay, so that it is removed even if the relay fails to start. */
let dataDir: string | undefined;
const http = new Agent({
  connections: IN_FLIGHT,
  headersTimeout: 15_000,
  bodyTimeout: 15_000,
  connectTimeout: 5_000,
});

after(async () => {
  await agent?.stop();
  for (const r of relays) await r.stop();
  await app?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function listChannel(r: RelayHandle, channelId: string): Promise<EventView[]> {
  return listEvents<EventView>(r, channelId);
}

function idFromBody(text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || !('id' in parsed)) return undefined;
  return typeof parsed.id === 'string' ? parsed.id : undefined;
}

function seqFromBody(body: Buffer): number | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || !('seq' in parsed)) return undefined;
  return typeof parsed.seq === 'number' ? parsed.seq : undefined;
}

test('kill -9 of the relay mid-burst loses no acknowledged webhook', async () => {
  app = await startApp();
  dataDir = await tempDir();
  const relay = await startRelay({ dataDir });
  relays.push(relay);
  const port = Number(new URL(relay.url).port);
  assert.ok(port > 0);
  const channel = await relay.api<{ id: string }>('POST', '/api/channels', { name: 'burst' });
  const paired = await pairAgent(relay, [channel.id]);
  stateDir = paired.stateDir;
  agent = await startAgent(stateDir, [{ channel: 'burst', target: `${app.url}/hooks` }]);
  const a = app;
  const runningAgent = agent;

  // The burst: SENT requests, IN_FLIGHT at a time, each body unique and carrying its seq.
  const bodies = Array.from({ length: SENT }, (_, seq) =>
    Buffer.from(JSON.stringify({ seq, nonce: randomBytes(12).toString('hex') })),
  );
  const acked = new Map<number, string>(); // seq → event id, only for a 202 with an id
  const otherStatus = new Map<number, number>(); // seq → a non-202 status
  const errored = new Set<number>(); // seq → no answer (connection refused, reset, …)
  let killed: Promise<number | null> | undefined;
  let agentLinesAtKill = 0;
  let next = 0;
  const worker = async () => {
    while (next < SENT) {
      const seq = next++;
      try {
        const res = await request(`${relay.url}/h/${channel.id}/burst`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: bodies[seq],
          dispatcher: http,
        });
        const text = await res.body.text();
        const id = idFromBody(text);
        if (res.statusCode === 202 && id !== undefined) acked.set(seq, id);
        else otherStatus.set(seq, res.statusCode);
      } catch {
        errored.add(seq);
      }
      if (!killed && acked.size >= KILL_AFTER_ACKS) {
        agentLinesAtKill = runningAgent.proc.lines.length;
        killed = relay.proc.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  assert.ok(killed, `the relay was killed (${acked.size} acknowledged)`);
  await killed;
  assert.equal(relay.proc.child.signalCode, 'SIGKILL', 'the relay died of SIGKILL');

  const ackedIds = new Map<string, number>(); // event id → seq
  for (const [seq, id] of acked) {
    assert.ok(!ackedIds.has(id), `event id ${id} was answered for two requests`);
    ackedIds.set(id, seq);
  }
  const unacknowledged = SENT - acked.size;
  assert.equal(acked.size + otherStatus.size + errored.size, SENT, 'every request settled');
  assert.deepEqual(
    [...new Set(otherStatus.values())],
    [],
    'before the crash the relay answered nothing but 202',
  );
  assert.ok(
    acked.size >= KILL_AFTER_ACKS && unacknowledged > 0,
    `the crash came mid-burst: ${acked.size} of ${SENT} acknowledged`,
  );

  // Restart on the same data dir and port; the agent finds it again by itself.
  const restarted = await startRelay({ dataDir, port });
  relays.push(restarted);
  assert.equal(restarted.url, relay.url);
  await runningAgent.proc.waitForMsg('connected to the relay', 30_000, agentLinesAtKill);

  // Store: every acknowledged id survived the crash.
  const stored = await listChannel(restarted, channel.id);
  const storedIds = new Set(stored.map((e) => e.id));
  const notStored = [...ackedIds.keys()].filter((id) => !storedIds.has(id));
  assert.deepEqual(notStored, [], `${notStored.length} acknowledged events missing from the store`);

  // Delivery: everything stored is delivered, in particular every acknowledged id.
  await eventually(
    async () => {
      const events = await listChannel(restarted, channel.id);
      return events.every((e) => e.status === 'delivered') ? true : undefined;
    },
    40_000,
    'every stored event to be delivered',
  );
  await eventually(
    () => {
      const seen = new Set(a.received.map((r) => String(r.headers['x-postern-event-id'])));
      return [...ackedIds.keys()].every((id) => seen.has(id)) ? true : undefined;
    },
    10_000,
    'every acknowledged event at the app',
  );

  const byId = new Map<string, Received[]>();
  for (const req of a.received) {
    const id = req.headers['x-postern-event-id'];
    assert.equal(typeof id, 'string', 'every request carries x-postern-event-id');
    const list = byId.get(String(id)) ?? [];
    list.push(req);
    byId.set(String(id), list);
  }
  const idsBySeq = new Map<number, Set<string>>();
  for (const [id, list] of byId) {
    for (const req of list) {
      const seq = seqFromBody(req.body);
      assert.ok(seq !== undefined && bodies[seq], `request for ${id} carries a sent body`);
      assert.deepEqual(req.body, bodies[seq], `body of ${id} (seq ${seq}) arrived unchanged`);
      const ackedSeq = ackedIds.get(id);
      if (ackedSeq !== undefined) assert.equal(seq, ackedSeq, `${id} carries the body of its seq`);
      const ids = idsBySeq.get(seq) ?? new Set<string>();
      ids.add(id);
      idsBySeq.set(seq, ids);
    }
  }
  const lost = [...ackedIds.keys()].filter((id) => !byId.has(id));
  const deliveredAcked = [...ackedIds.keys()].filter((id) => byId.has(id)).length;
  const deliveredUnacked = [...byId.keys()].filter((id) => !ackedIds.has(id)).length;
  let duplicates = 0;
  for (const list of byId.values()) duplicates += list.length - 1;
  const reIdentified = [...idsBySeq].filter(([, ids]) => ids.size > 1).map(([seq]) => seq);

  console.log(
    `relay crash: ${SENT} sent, ${acked.size} acknowledged, ${deliveredAcked} delivered, ` +
      `${lost.length} lost, ${unacknowledged} unacknowledged (${errored.size} errored, ` +
      `${otherStatus.size} other status; ${deliveredUnacked} of them committed and delivered ` +
      `anyway), ${duplicates} duplicates (same id), ${stored.length} stored`,
  );
  assert.deepEqual(lost, [], `${acked.size} acknowledged, ${deliveredAcked} delivered`);
  assert.equal(deliveredAcked, acked.size);
  assert.deepEqual(reIdentified, [], 'no webhook arrived under two different event ids');
  // Whatever arrived beyond the acknowledged ones was committed just before the crash.
  assert.ok(
    deliveredUnacked <= unacknowledged,
    `${deliveredUnacked} unacknowledged delivered ≤ ${unacknowledged}`,
  );
  assert.deepEqual(
    [...byId.keys()].filter((id) => !storedIds.has(id)),
    [],
    'every id at the app is a stored event',
  );
  assert.equal(byId.size, stored.length, 'the app got exactly the stored events');
});
