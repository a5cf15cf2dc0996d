/**
 * Fairness between the channels of one agent: a channel with a backlog larger than the agent's
 * window, and an app that holds its requests, does not starve its other channels. Room freed in
 * the window goes to the channel with work and the fewest deliveries in flight: one answer of
 * the busy app is enough for a quiet channel's events to go through, one after another, while
 * the busy channel still has hundreds pending.
 *
 * The busy channel's app holds every request until the test releases a given number of them,
 * so what is in flight and what was delivered are known exactly at every step: no timing
 * decides the outcome.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  type Route,
} from '../helpers/processes.ts';
import { acknowledged, burst, burstDispatcher } from '../fault/helpers.ts';
import {
  countById,
  listChannel,
  need,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  waitDelivered,
  waitEvents,
} from './support.ts';
import { test } from '../helpers/store.ts';

/** Events of the busy channel beyond a full window: work it still has when the window is full. */
const BACKLOG = 144;
/** Events of the quiet channel, sent once the busy one fills the window. */
const QUIET = 30;
/** Deliveries of the busy channel answered while the quiet one waits: one frees room. */
const RELEASED = 1;

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
let busyApp: TestApp | undefined;
let quietApp: TestApp | undefined;
let busyId = '';
let quietId = '';
/** The window the relay gave the agent (read from the agent's log). */
let window = 0;
const http = burstDispatcher(20);

/** Requests of the busy app not answered yet, oldest first. */
const held: ServerResponse[] = [];
let holding = true;
let answered = 0;

function answer(res: ServerResponse): void {
  answered++;
  res.end('ok');
}

/** Answers the `n` oldest held requests. */
function release(n: number): void {
  for (const res of held.splice(0, n)) answer(res);
}

before(
  async () => {
    busyApp = await startApp((_req, res) => {
      if (holding) held.push(res);
      else answer(res);
    });
    quietApp = await startApp();
    dataDir = await tempDir();
    const r = await startRelay({ dataDir });
    relay = r;
    busyId = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'busy' })).id;
    quietId = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'quiet' })).id;
    ({ stateDir } = await pairAgent(r, [busyId, quietId]));
    // Held requests must not time out at the agent (that would be a failure and a retry).
    const routes: Route[] = [
      { channel: 'busy', target: `${busyApp.url}/busy`, timeoutMs: 120_000 },
      { channel: 'quiet', target: `${quietApp.url}/quiet`, timeoutMs: 120_000 },
    ];
    agent = await startAgent(stateDir, routes);
    const welcome = await agent.proc.waitForMsg('connected to the relay');
    window = Number(welcome['window']);
    assert.ok(Number.isInteger(window) && window > 0, `window ${String(welcome['window'])}`);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  holding = false;
  release(held.length);
  await agent?.stop();
  await relay?.stop();
  await busyApp?.close();
  await quietApp?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function statusCounts(events: { status: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[e.status] = (out[e.status] ?? 0) + 1;
  return out;
}

test(
  'a channel with a backlog past the window and an app holding its requests does not starve another channel of the same agent',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const busy = need(busyApp, 'busy app');
    const quiet = need(quietApp, 'quiet app');
    const BUSY = window + BACKLOG;

    const busySent = acknowledged(
      await burst({
        url: `${r.url}/h/${busyId}/x`,
        count: BUSY,
        inFlight: 20,
        dispatcher: http,
        deadlineMs: 30_000,
        label: 'busy',
      }),
    );
    assert.equal(busySent.size, BUSY, `${busySent.size} of ${BUSY} busy events accepted`);
    // The window is full of held busy deliveries; the backlog waits on the relay.
    await busy.waitFor(window, 30_000);
    await waitEvents(
      r,
      busyId,
      busySent.keys(),
      (e) => e.status === 'queued' || e.status === 'delivering',
      'pending',
    );
    const full = statusCounts(await listChannel(r, busyId));
    assert.deepEqual(full, { delivering: window, queued: BACKLOG }, 'window full, backlog queued');

    const quietSent = acknowledged(
      await burst({
        url: `${r.url}/h/${quietId}/x`,
        count: QUIET,
        inFlight: 10,
        dispatcher: http,
        deadlineMs: 30_000,
        label: 'quiet',
      }),
    );
    assert.equal(quietSent.size, QUIET, `${quietSent.size} of ${QUIET} quiet events accepted`);
    // No room in the window: nothing of the quiet channel can have gone yet.
    assert.equal(quiet.received.length, 0, 'the quiet channel waits for room in the window');

    // Free one slot: the busy channel has 144 events queued that could take it.
    release(RELEASED);
    const quietDone = await waitDelivered(r, quietId, quietSent.keys(), 30_000);
    assert.equal(quietDone.size, QUIET);
    // The busy app answered nothing more than what was released: the quiet channel got the
    // freed room, and kept it for its next events, while the busy one still had work queued.
    assert.equal(answered, RELEASED, 'busy deliveries answered so far');
    const busyNow = await listChannel(r, busyId);
    const delivered = busyNow.filter((e) => e.status === 'delivered').length;
    const pending = busyNow.filter((e) => e.status === 'queued' || e.status === 'delivering');
    console.log(
      `fairness: window ${window}, ${BUSY} busy + ${QUIET} quiet; after the busy app answered ${RELEASED}, ` +
        `quiet ${quietDone.size}/${QUIET} delivered, busy ${delivered} delivered, ` +
        `${pending.length} pending (${statusCounts(pending)['queued'] ?? 0} still queued)`,
    );
    assert.equal(delivered, RELEASED, 'busy: delivered = released');
    assert.equal(pending.length, BUSY - RELEASED, 'busy: the rest still pending');
    assert.ok(
      (statusCounts(pending)['queued'] ?? 0) > 0,
      'busy still had events queued on the relay when the quiet channel was served',
    );

    // Let everything through: exact counts at the end.
    holding = false;
    release(held.length);
    await waitDelivered(r, busyId, busySent.keys(), 60_000);
    const busyById = countById(busy.received);
    const quietById = countById(quiet.received);
    assert.equal(busy.received.length, BUSY, 'busy: one request per event');
    assert.equal(quiet.received.length, QUIET, 'quiet: one request per event');
    assert.deepEqual(
      [...busySent.keys()].filter((id) => busyById.get(id) !== 1),
      [],
      'every busy event reached its app exactly once',
    );
    assert.deepEqual(
      [...quietSent.keys()].filter((id) => quietById.get(id) !== 1),
      [],
      'every quiet event reached its app exactly once',
    );
    const all = [...(await listChannel(r, busyId)), ...(await listChannel(r, quietId))];
    assert.equal(all.length, BUSY + QUIET);
    assert.deepEqual(statusCounts(all), { delivered: BUSY + QUIET }, '0 lost, 0 failed');
    assert.deepEqual(
      all.filter((e) => e.attemptCount !== 1).map((e) => e.id),
      [],
      'one attempt each',
    );
  },
);
