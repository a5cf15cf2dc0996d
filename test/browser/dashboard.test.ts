/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core, which downloads
 * no browser of its own), against a real relay, agent and target app: log in, watch a webhook
 * arrive live, open it, check its body and headers, replay it and watch the new attempt.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { startApp } from '../helpers/app.ts';
import { launchChromium } from '../helpers/browser.ts';
import { textMatches } from '../helpers/dashboard.ts';
import {
  ROOT,
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
} from '../helpers/processes.ts';

const SCREENSHOT = path.join(ROOT, 'test', 'artifacts', 'dashboard.png');

test('dashboard: login, live events, detail, replay', { timeout: 90_000 }, async (t) => {
  // The app fails while `healthy` is false; the channel makes a single attempt, so a failure
  // leaves the event `failed` at once, ready to be replayed.
  let healthy = false;
  const app = await startApp((_req, res) => {
    res.statusCode = healthy ? 200 : 500;
    res.end(healthy ? 'ok' : 'down');
  });
  t.after(() => app.close());
  const relay = await startRelay();
  t.after(async () => {
    await relay.stop();
    await removeDir(relay.dataDir);
  });
  const channel = await relay.api('POST', '/api/channels', {
    name: 'github',
    retry: { delaysMs: [] },
  });
  const { stateDir } = await pairAgent(relay, ['github'], 'laptop');
  const agent = await startAgent(stateDir, [{ channel: 'github', target: `${app.url}/hooks` }]);
  t.after(async () => {
    await agent.stop();
    await removeDir(stateDir);
  });
  const send = async (body: unknown) => {
    const res = await request(`${relay.url}/h/${channel.id}/push?ref=main`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-test-trace': 'dashboard-e2e',
      },
      body: JSON.stringify(body),
    });
    assert.equal(res.statusCode, 202);
    return ((await res.body.json()) as { id: string }).id;
  };

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Script errors and Content-Security-Policy violations fail the test.
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });

  await page.goto(relay.url);
  assert.match(await page.title(), /Postern/);

  // A wrong token is refused with a clear message; Enter submits the form.
  const tokenInput = page.getByLabel('Admin token');
  await tokenInput.fill('not-the-admin-token');
  await tokenInput.press('Enter');
  await textMatches(page.getByRole('alert'), /Wrong admin token/, 'the wrong-token message');
  assert.equal(await page.evaluate('sessionStorage.length'), 0, 'a refused token is not kept');

  await tokenInput.fill(relay.token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Events', level: 2 }).waitFor();
  assert.equal(await page.evaluate('sessionStorage.length'), 1, 'the token is kept for the tab');
  await page.locator('.feed[data-state="live"]').waitFor({ timeout: 10_000 });
  await textMatches(page.locator('.live-count'), /New events appear here/, 'the empty feed');

  // A webhook arrives: it appears at the top without a reload, then turns failed in place.
  await page.evaluate('window.__sameDocument = true');
  const payload = { action: 'opened', repository: { full_name: 'acme/app' }, n: [1, 2, 3] };
  const id = await send(payload);
  const row = page.locator(`tr[data-event-id="${id}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('table.events tbody tr').count(), 1);
  await textMatches(row, /POST \/push\?ref=main/, 'the request line in the row');
  await textMatches(row, /github/, 'the channel name in the row');
  await textMatches(page.locator('.live-count'), /^1 new event received live\.$/, 'the count');
  await waitForEventStatus(relay, id, 'failed');
  await textMatches(row, /failed/, 'the row updated in place to failed');
  assert.equal(await page.evaluate('window.__sameDocument'), true, 'the page was not reloaded');

  // The event's detail: request, pretty JSON body, headers as received, one failed attempt.
  await row.getByRole('link').click();
  await page.getByRole('heading', { name: new RegExp(`Event ${id}`) }).waitFor();
  const body = page.locator('section[aria-labelledby="body-heading"] pre.body');
  assert.equal(await body.getAttribute('data-kind'), 'json');
  assert.equal(await body.innerText(), JSON.stringify(payload, null, 2));
  const header = (name: string) => page.locator('table.headers tbody tr', { hasText: name });
  assert.equal(await header('x-github-event').locator('td').innerText(), 'push');
  assert.equal(await header('x-test-trace').locator('td').innerText(), 'dashboard-e2e');
  assert.equal(await header('content-type').locator('td').innerText(), 'application/json');
  await textMatches(page.locator('.request-line'), /^POST \/push\?ref=main$/, 'request line');
  const attempts = page.locator('table.attempts > tbody > tr:not(.response-row)');
  await textMatches(attempts, /failed/, 'the first attempt');
  assert.equal(await attempts.count(), 1);
  const first = await attempts.first().innerText();
  assert.match(first, /laptop/, 'the attempt names the agent');
  assert.match(first, /\b500\b/, 'the attempt shows the HTTP status');

  // Replay once the app is back: a second attempt appears in the timeline, live.
  healthy = true;
  await page.getByRole('button', { name: 'Replay this event' }).click();
  await textMatches(page.getByRole('status').filter({ hasText: 'Queued again' }), /Queued/, 'ack');
  await eventually(
    async () => ((await attempts.count()) === 2 ? true : undefined),
    10_000,
    'a second attempt in the timeline',
  );
  await textMatches(attempts.nth(1), /delivered/, 'the replayed attempt delivered');
  assert.match(await attempts.nth(1).innerText(), /\b200\b/);
  await textMatches(page.locator('.facts'), /delivered/, 'the status, now delivered');
  assert.equal(app.received.length, 2, 'the app got the event twice: the failure, the replay');
  assert.deepEqual(
    app.received.map((r) => r.headers['x-postern-event-id']),
    [id, id],
  );
  assert.equal(app.received[1]!.body.toString(), JSON.stringify(payload));

  await mkdir(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // Bulk: another event fails; "replay all failed events" of the channel queues exactly it.
  await page.getByRole('link', { name: 'All events' }).click();
  await page.getByRole('heading', { name: 'Events', level: 2 }).waitFor();
  healthy = false;
  const second = await send({ action: 'closed' });
  await waitForEventStatus(relay, second, 'failed');
  await page.getByLabel('Channel').selectOption({ label: 'github' });
  const secondRow = page.locator(`tr[data-event-id="${second}"]`);
  await textMatches(secondRow, /failed/, 'the second event, failed');
  healthy = true;
  await page.getByRole('button', { name: 'Replay all failed events' }).click();
  await textMatches(
    page.getByRole('status').filter({ hasText: 'Queued' }),
    /^Queued 1 failed event of github for replay\.$/,
    'the queued count',
  );
  await textMatches(secondRow, /delivered/, 'the second event, delivered after the bulk replay');
  assert.equal(app.received.length, 4);

  // Agents and channels: the paired agent is connected; the channel shows its ingress URL.
  await page.getByRole('link', { name: 'Agents' }).click();
  const agentRow = page.locator('table.agents tbody tr', { hasText: 'laptop' });
  await textMatches(agentRow, /connected/, 'the agent connected');
  await page.getByRole('link', { name: 'Channels' }).click();
  const channelRow = page.locator(`tr[data-channel-id="${channel.id}"]`);
  await textMatches(channelRow, new RegExp(channel.ingressUrl), 'the ingress URL');
  assert.equal(
    await channelRow.getByRole('button', { name: 'Copy the ingress URL of github' }).count(),
    1,
  );

  // Log out: back to the login form, and the token is gone from the tab.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate('sessionStorage.length'), 0);

  assert.deepEqual(problems, []);
});
