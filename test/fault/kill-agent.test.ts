/**
 * kill -9 of the agent in the middle of a burst, then the agent started again on the same state
 * dir: every webhook acknowledged with 202 reaches the app, with the body that was sent, and a
 * webhook that arrives twice (its ack died with the agent) carries the same event id both times.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  describeAccounting,
  eventIdOf,
  waitAllDelivered,
} from './helpers.ts';
import { test } from '../helpers/store.ts';

const SENT = 1_000;
const KILL_AFTER_DELIVERED = 250;

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
const agents: AgentHandle[] = [];
let dataDir: string | undefined;
let stateDir: string | undefined;
const http = burstDispatcher(20);

after(async () => {
  for (const a of agents) await a.stop();
  await relay?.stop();
  await app?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

test('kill -9 of the agent mid-burst, then a restart: every acknowledged webhook arrives', async () => {
  // Answers take a few ms, so that the agent has deliveries in progress when it dies.
  app = await startApp((_req, res) => void setTimeout(() => res.end('ok'), 5 + Math.random() * 20));
  dataDir = await tempDir();
  relay = await startRelay({ dataDir });
  const r = relay;
  const a = app;
  const channel = await r.api<{ id: string }>('POST', '/api/channels', { name: 'kill-agent' });
  const routes = [{ channel: 'kill-agent', target: `${a.url}/hooks` }];
  ({ stateDir } = await pairAgent(r, [channel.id]));
  const first = await startAgent(stateDir, routes);
  agents.push(first);

  let killed: Promise<number | null> | undefined;
  let sentAtKill = 0;
  let answeredAtKill = 0;
  let receivedAtKill = 0;
  const sent = await burst({
    url: `${r.url}/h/${channel.id}/kill`,
    count: SENT,
    inFlight: 20,
    ratePerSec: 300,
    dispatcher: http,
    deadlineMs: 45_000,
    label: 'kill-agent',
    onAnswer: () => {
      answeredAtKill++;
      if (!killed && a.received.length >= KILL_AFTER_DELIVERED) {
        receivedAtKill = a.received.length;
        sentAtKill = answeredAtKill;
        killed = first.proc.kill('SIGKILL');
      }
    },
  });
  assert.ok(killed, `the agent was killed (${a.received.length} requests at the app)`);
  await killed;
  assert.equal(first.proc.child.signalCode, 'SIGKILL', 'the agent died of SIGKILL');
  const acked = acknowledged(sent);
  assert.equal(sent.length, SENT, `${sent.length} of ${SENT} requests sent in time`);
  assert.deepEqual(
    sent.filter((s) => s.status !== 202 || s.id === null).map((s) => `seq ${s.seq}: ${s.status}`),
    [],
    'the relay answered every webhook 202',
  );
  assert.ok(
    sentAtKill < SENT,
    `the kill came mid-burst: ${sentAtKill} of ${SENT} answered when the agent died`,
  );
  const receivedWhileDead = a.received.length;
  const second = await startAgent(stateDir, routes);
  agents.push(second);

  await waitAllDelivered(r, channel.id, acked.keys(), 60_000);
  const acc = account(acked, a.received);
  const seenAtKill = new Set(a.received.slice(0, receivedAtKill).map(eventIdOf));
  console.log(
    `kill agent: SIGKILL after ${sentAtKill} of ${SENT} webhooks answered, with ` +
      `${seenAtKill.size} ids at the app; ${receivedWhileDead - receivedAtKill} more requests ` +
      `reached the app from the dying agent; restarted on the same state dir`,
  );
  console.log(describeAccounting('kill agent', SENT, acc));
  assert.deepEqual(acc.lost, [], `${acc.lost.length} acknowledged webhooks lost`);
  assert.equal(acc.delivered, SENT, `${SENT} acknowledged, ${acc.delivered} delivered`);
  assert.deepEqual(acc.foreign, [], 'every request at the app carries an acknowledged event id');
  assert.deepEqual(acc.wrongBody, [], 'every request carries the body sent under its id');
  assert.equal(acc.reIdentified, 0, 'no webhook arrived under two event ids');
  assert.equal(a.received.length, SENT + acc.duplicates);
});
