/**
 * The dashboard at 390 px (a phone) and 1280 px, in Chromium: no view scrolls sideways, the
 * header's Live state and Log out stay visible, paths do not wrap per character; an event shows
 * why it waits, each attempt's answer from the app (as text, never as HTML) and replay marks;
 * Replay is offered only where the relay accepts it; "Copy as curl" and "Download body" give
 * the exact request. Screenshots of each view at each width go to test/artifacts/.
 *
 * The `waiting` and `response` fields are laid over the relay's real answers (page.route), so
 * the rendering is tested whatever produces them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { Page, Route } from 'playwright-core';
import { request } from 'undici';
import { startApp } from '../helpers/app.ts';
import { launchChromium } from '../helpers/browser.ts';
import {
  assertNoSidewaysScroll,
  contrast,
  logIn,
  screenshot,
  textMatches,
  watchProblems,
} from '../helpers/dashboard.ts';
import {
  eventually,
  listEvents,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
} from '../helpers/processes.ts';

const run = promisify(execFile);

const LONG_PATH = '/github/webhooks/repositories/acme-corporation/platform-monorepo/push';
const XSS_BODY = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>oops';
const b64 = (s: string) => Buffer.from(s).toString('base64');

type Json = Record<string, any>;

/** Answers `GET api/events/<id>` (and lists holding it) with `change` applied to the event. */
async function overlay(page: Page, id: string, change: (e: Json) => Json): Promise<void> {
  await page.route(
    (url) => url.pathname === `/api/events/${id}`,
    async (route: Route) => {
      const res = await route.fetch();
      await route.fulfill({ response: res, json: change(await res.json()) });
    },
  );
}

test(
  'dashboard at 390 and 1280 px: layout, why waiting, answers, replay rules, curl, download',
  {
    timeout: 180_000,
  },
  async (t) => {
    const app = await startApp((_req, res) => {
      res.statusCode = 500;
      res.end('down');
    });
    t.after(() => app.close());
    const relay = await startRelay();
    t.after(async () => {
      await relay.stop();
      await removeDir(relay.dataDir);
    });
    const hooks = await relay.api('POST', '/api/channels', {
      name: 'github-webhooks-for-the-acme-platform-monorepo',
      retry: { delaysMs: [] },
    });
    const parked = await relay.api('POST', '/api/channels', { name: 'parked' });
    const signed = await relay.api('POST', '/api/channels', {
      name: 'signed',
      verify: { provider: 'github', secret: 'a-github-webhook-secret' },
    });
    const { stateDir } = await pairAgent(relay, [hooks.name], 'laptop');
    const agent = await startAgent(stateDir, [{ channel: hooks.name, target: `${app.url}/in` }]);
    t.after(async () => {
      await agent.stop();
      await removeDir(stateDir);
    });

    // A body a shell must not interpret: quotes, $( ), backticks, a newline, non-ASCII.
    const payload = `{"msg":"it's $(touch /tmp/postern-pwned) \`id\` é","n":1}\n`;
    const post = async (channelId: string, path: string, body: string) => {
      const res = await request(`${relay.url}/h/${channelId}${path}?ref=main`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push' },
        body,
      });
      const answer = (await res.body.json()) as Json;
      return { status: res.statusCode, answer };
    };
    const failed = (await post(hooks.id, LONG_PATH, payload)).answer['id'] as string;
    await waitForEventStatus(relay, failed, 'failed');
    const queued = (await post(parked.id, '/stripe', '{"type":"invoice.paid"}')).answer[
      'id'
    ] as string;
    const refused = await post(signed.id, '/push', '{"forged":true}');
    assert.equal(refused.status, 401);
    const rejected = await eventually(async () => {
      const events = await listEvents<{ id: string; status: string }>(relay, signed.id);
      return events.find((e) => e.status === 'rejected')?.id;
    });

    const browser = await launchChromium();
    t.after(() => browser.close());

    for (const width of [390, 1280]) {
      const context = await browser.newContext({
        viewport: { width, height: 844 },
        permissions: ['clipboard-read', 'clipboard-write'],
      });
      const page = await context.newPage();
      const problems = watchProblems(page);
      const shot = (view: string) => screenshot(page, `dashboard-${width}-${view}`);

      // The app's answers, two attempts (the second after a replay), and why events wait.
      await overlay(page, failed, (e) => {
        const first = e['attempts'][0];
        const response = {
          headers: [
            ['content-type', 'text/html; charset=utf-8'],
            ['x-app-note', '<b>not bold</b>'],
          ],
          body: b64(XSS_BODY),
          bodyBytes: 5000,
          truncated: true,
        };
        return {
          ...e,
          attempts: [
            { ...first, response },
            { ...first, replay: 1, response },
          ],
        };
      });
      const waitingQueued = {
        reason: 'no_agent',
        message: 'No agent is granted channel parked: grant one in Agents.',
      };
      await overlay(page, queued, (e) => ({ ...e, waiting: waitingQueued }));
      await page.route(
        (url) => url.pathname === '/api/events',
        async (route) => {
          const res = await route.fetch();
          const page_ = await res.json();
          for (const e of page_.events) if (e.id === queued) e.waiting = waitingQueued;
          await route.fulfill({ response: res, json: page_ });
        },
      );
      const delivering = 'evt_00000000000000000000000000';
      await page.route(
        (url) => url.pathname === `/api/events/${delivering}`,
        async (route) => {
          const res = await route.fetch({ url: `${relay.url}/api/events/${queued}` });
          const e = await res.json();
          await route.fulfill({
            status: 200,
            json: {
              ...e,
              id: delivering,
              status: 'delivering',
              waiting: {
                reason: 'delivering',
                message: 'Being delivered by agent laptop.',
                agentName: 'laptop',
              },
            },
          });
        },
      );

      await page.goto(relay.url);
      await page.getByLabel('Admin token').waitFor();
      await assertNoSidewaysScroll(page, `login at ${width}`);
      await shot('login');
      await logIn(page, relay.url, relay.token);
      await page.locator('.feed[data-state="live"]').waitFor({ timeout: 10_000 });

      // The header: Live and Log out inside the viewport, the button visible against the bar.
      // A string: functions given to evaluate() would carry the test transpiler's helpers.
      const bar = (await page.evaluate(`(() => {
      const style = (sel) => getComputedStyle(document.querySelector(sel));
      const box = (sel) => document.querySelector(sel).getBoundingClientRect().toJSON();
      return {
        barBg: style('.topbar').backgroundColor,
        buttonBg: style('.topbar button').backgroundColor,
        buttonFg: style('.topbar button').color,
        feedFg: style('.topbar .feed').color,
        button: box('.topbar button'),
        feed: box('.topbar .feed'),
      };
    })()`)) as Record<'barBg' | 'buttonBg' | 'buttonFg' | 'feedFg', string> &
        Record<'button' | 'feed', { left: number; right: number }>;
      for (const [name, box] of [
        ['Log out', bar.button],
        ['Live', bar.feed],
      ] as const) {
        assert.ok(
          box.left >= 0 && box.right <= width,
          `${name} is inside ${width} px: ${box.left}–${box.right}`,
        );
      }
      assert.ok(
        contrast(bar.buttonBg, bar.barBg) >= 3,
        `Log out stands out: ${bar.buttonBg} on ${bar.barBg}`,
      );
      assert.ok(contrast(bar.buttonFg, bar.buttonBg) >= 4.5, 'Log out text is readable');
      assert.ok(contrast(bar.feedFg, bar.barBg) >= 4.5, 'the Live state is readable');

      // Events: rows for all three, the queued one says why, the long path keeps its width.
      const row = (id: string) => page.locator(`tr[data-event-id="${id}"]`);
      await row(rejected).waitFor();
      await textMatches(
        row(queued),
        /No agent is granted channel parked/,
        'why it waits, in the list',
      );
      const link = await row(failed).locator('td.request a').boundingBox();
      assert.ok(
        link && link.width >= Math.min(280, width * 0.6),
        `the path is ${link?.width} px wide`,
      );
      await page.getByLabel('Status').selectOption('filtered');
      await page.getByLabel('Status').selectOption('');
      await assertNoSidewaysScroll(page, `events at ${width}`);
      await shot('events');

      // The failed event: the app's answers as text, replay marked, Replay offered.
      await page.goto(`${relay.url}/#/event/${failed}`);
      await page.getByRole('heading', { name: new RegExp(`Event ${failed}`) }).waitFor();
      const attempts = page.locator('table.attempts > tbody > tr:not(.response-row)');
      await attempts.nth(1).waitFor();
      assert.equal(await attempts.count(), 2);
      assert.doesNotMatch(await attempts.nth(0).innerText(), /replay/);
      await textMatches(attempts.nth(1), /replay 1/, 'the replay mark');
      assert.match(await page.locator('.facts').innerText(), /Attempts since the last replay/);
      const answers = page.locator('details.response');
      assert.equal(await answers.count(), 2);
      await answers.nth(0).locator('summary').click();
      await textMatches(
        answers.nth(0).locator('summary'),
        /HTTP 500.*5000 bytes.*only the start/,
        'summary',
      );
      const answerBody = answers.nth(0).locator('pre.body');
      assert.equal(await answerBody.innerText(), XSS_BODY, 'the answer is shown as text');
      await textMatches(answers.nth(0).locator('table.headers'), /<b>not bold<\/b>/, 'headers');
      assert.equal(await page.locator('main img, main b, main script').count(), 0);
      assert.equal(await page.evaluate('window.__xss'), undefined);
      await textMatches(answers.nth(0), /at most 2048 bytes of body/, 'the bound');
      assert.equal(await page.getByRole('button', { name: 'Replay this event' }).count(), 1);
      await assertNoSidewaysScroll(page, `event detail at ${width}`);
      await shot('event-failed');

      if (width === 1280) {
        // Copy as curl, run as pasted: the relay gets the same request, byte for byte.
        await page.getByRole('button', { name: 'Copy as curl' }).click();
        const curl = String(await page.evaluate('navigator.clipboard.readText()'));
        assert.match(curl, /^curl -X 'POST' 'http:\/\/localhost:\d+\/h\/ch_/);
        const sent = await run('sh', ['-c', `${curl} --silent --max-time 10`]);
        const again = JSON.parse(sent.stdout).id as string;
        assert.notEqual(again, failed);
        const copy = await relay.api('GET', `/api/events/${again}`);
        const original = await relay.api('GET', `/api/events/${failed}`);
        assert.equal(copy.body, original.body, 'the same body bytes');
        assert.equal(copy.path, LONG_PATH);
        assert.equal(copy.query, 'ref=main');
        const named = (e: Json, n: string) => e['headers'].find((h: string[]) => h[0] === n)?.[1];
        assert.equal(named(copy, 'x-github-event'), 'push');
        assert.equal(named(copy, 'content-type'), 'application/json');

        // Download body: the exact bytes, named after the event.
        const [download] = await Promise.all([
          page.waitForEvent('download'),
          page.getByRole('button', { name: 'Download body' }).click(),
        ]);
        assert.equal(download.suggestedFilename(), `${failed}.json`);
        assert.equal(await readFile((await download.path())!, 'utf8'), payload);
      }

      // The queued event says why; Replay is offered (the relay accepts it).
      await page.goto(`${relay.url}/#/event/${queued}`);
      await textMatches(page.locator('p.waiting'), /No agent is granted channel parked/, 'waiting');
      assert.equal(await page.getByRole('button', { name: 'Replay this event' }).count(), 1);
      await assertNoSidewaysScroll(page, `queued event at ${width}`);
      await shot('event-queued');

      // Rejected and delivering events: the relay refuses a replay, so none is offered.
      await page.goto(`${relay.url}/#/event/${rejected}`);
      await textMatches(page.locator('.facts'), /rejected/, 'the rejected event');
      assert.equal(await page.getByRole('button', { name: 'Replay this event' }).count(), 0);
      await page.goto(`${relay.url}/#/event/${delivering}`);
      await textMatches(page.locator('p.waiting'), /Being delivered by agent laptop/, 'delivering');
      assert.equal(await page.getByRole('button', { name: 'Replay this event' }).count(), 0);

      // Agents and channels, with their edit forms open.
      await page.getByRole('link', { name: 'Agents' }).click();
      await textMatches(page.locator('table.agents tbody tr').first(), /laptop/, 'the agent');
      await assertNoSidewaysScroll(page, `agents at ${width}`);
      await shot('agents');
      await page.getByRole('button', { name: 'Change the channels of laptop' }).click();
      await page.getByRole('button', { name: 'Save channels' }).waitFor();
      await assertNoSidewaysScroll(page, `agent channels form at ${width}`);

      await page.getByRole('link', { name: 'Channels' }).click();
      await page.locator(`tr[data-channel-id="${hooks.id}"]`).waitFor();
      await assertNoSidewaysScroll(page, `channels at ${width}`);
      await shot('channels');
      await page.getByRole('button', { name: `Edit ${signed.name}` }).click();
      await page.getByRole('button', { name: 'Save changes' }).waitFor();
      await assertNoSidewaysScroll(page, `channel form at ${width}`);
      await shot('channel-edit');

      assert.deepEqual(problems, []);
      await context.close();
    }
  },
);
