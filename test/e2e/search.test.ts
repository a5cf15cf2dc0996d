/**
 * Finding events: `GET /api/events` with a time range (`since`, `until`) and a search (`q`: an
 * event id, or text in header values and bodies), and `events list --since --until --search`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import { removeDir, startRelay, type RelayHandle } from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
let relay: RelayHandle;

before(async () => {
  relay = await startRelay();
  // No agent: every event stays queued.
  await relay.api('POST', '/api/channels', { name: 'found' });
});

after(async () => {
  await relay?.stop();
  await removeDir(relay.dataDir);
});

interface Page {
  events: { id: string; receivedAt: string }[];
  next: string | null;
  examined?: number;
}

async function send(headers: Record<string, string>, body: string): Promise<string> {
  const { id: channelId } = await relay.api('GET', '/api/channels/found');
  const res = await request(`${relay.url}/h/${channelId}`, { method: 'POST', headers, body });
  assert.equal(res.statusCode, 202);
  return ((await res.body.json()) as { id: string }).id;
}

async function status(p: string): Promise<number> {
  const res = await fetch(`${relay.url}${p}`, {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  await res.body?.cancel();
  return res.status;
}

test('GET /api/events: since, until, and q in headers, bodies and ids', async () => {
  const first = await send({ 'x-delivery': 'Order-Shipped' }, '{"kind":"created"}');
  const second = await send({}, '{"kind":"Order-SHIPPED","note":"été"}');
  const third = await send({ 'x-shipped': 'no' }, 'nothing to see');
  const ids = (p: Page) => p.events.map((e) => e.id);

  const all: Page = await relay.api('GET', '/api/events?channel=found');
  assert.deepEqual(ids(all), [third, second, first]);
  assert.equal(all.examined, undefined, 'a listing without q examines nothing');
  const at = (i: number) => Date.parse(all.events[i]!.receivedAt);

  const found: Page = await relay.api('GET', '/api/events?q=order-shipped');
  assert.deepEqual(ids(found), [second, first], 'header values and bodies, any case');
  assert.equal(found.next, null);
  assert.ok(found.examined !== undefined && found.examined >= 3);
  const utf8: Page = await relay.api('GET', `/api/events?q=${encodeURIComponent('ÉTÉ')}`);
  assert.deepEqual(ids(utf8), [second]);
  const byId: Page = await relay.api('GET', `/api/events?q=${first}`);
  assert.deepEqual(ids(byId), [first]);
  assert.equal(byId.examined, 1);
  const paged: Page = await relay.api('GET', '/api/events?q=shipped&limit=1');
  assert.deepEqual(ids(paged), [second], 'a header name is no match');
  assert.equal(paged.next, second);
  const rest: Page = await relay.api('GET', `/api/events?q=shipped&limit=1&before=${second}`);
  assert.deepEqual(ids(rest), [first]);

  // Times: ms since the epoch or ISO 8601; since inclusive, until exclusive.
  const within = (since: number, until: number, of = ids(all)) =>
    all.events
      .filter((e) => Date.parse(e.receivedAt) >= since && Date.parse(e.receivedAt) < until)
      .map((e) => e.id)
      .filter((id) => of.includes(id));
  const list = async (query: string): Promise<string[]> =>
    ids(await relay.api('GET', `/api/events?channel=found&${query}`));
  const iso = (ms: number) => new Date(ms).toISOString();
  assert.deepEqual(await list(`until=${at(2)}`), [], 'nothing before the first event');
  assert.deepEqual(await list(`since=${at(0) + 1}`), []);
  assert.deepEqual(await list(`since=${at(2)}&until=${at(2) + 1}`), within(at(2), at(2) + 1));
  assert.deepEqual(await list(`since=${at(1)}&until=${iso(at(0))}`), within(at(1), at(0)));
  assert.deepEqual(await list(`since=${iso(at(0))}`), within(at(0), Infinity));
  assert.deepEqual(
    await list(`q=shipped&until=${at(2) + 1}`),
    within(at(2), at(2) + 1, [second, first]),
  );

  for (const bad of ['since=yesterday', 'until=12:00', `q=${'x'.repeat(257)}`]) {
    assert.equal(await status(`/api/events?${bad}`), 400, bad);
  }
});

test('events list --since --until --search', async () => {
  const id = await send({ 'x-cli': 'Needle-In-Header' }, 'plain');
  const cli = (...args: string[]) =>
    run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'server/main.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, POSTERN_RELAY_URL: relay.url, POSTERN_ADMIN_TOKEN: relay.token },
    });
  const event: { receivedAt: string } = await relay.api('GET', `/api/events/${id}`);
  const at = Date.parse(event.receivedAt);
  const hit = await cli('events', 'list', '--search', 'needle-in', '--since', String(at));
  assert.match(hit.stdout, new RegExp(`${id}.*queued`));
  assert.match(hit.stdout, /\(examined \d+ events; no more\)/);
  const miss = await cli('events', 'list', '--search', 'needle-in', '--until', String(at));
  assert.doesNotMatch(miss.stdout, new RegExp(id));
  const json = JSON.parse(
    (
      await cli(
        'events',
        'list',
        '--search',
        'NEEDLE',
        '--json',
        '--since',
        new Date(at).toISOString(),
      )
    ).stdout,
  ) as Page;
  assert.deepEqual(
    json.events.map((e) => e.id),
    [id],
  );
});
