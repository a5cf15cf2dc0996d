/**
 * The events view's search box and time range, in Chromium at 390 px and 1280 px: a search in
 * header values and bodies, an event id, From and To, every status in the filter, and how many
 * events the relay examined. Screenshots go to test/artifacts/.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { request } from 'undici';
import { launchChromium } from '../helpers/browser.ts';
import {
  assertNoSidewaysScroll,
  logIn,
  screenshot,
  textMatches,
  watchProblems,
} from '../helpers/dashboard.ts';
import { eventually, removeDir, startRelay } from '../helpers/processes.ts';

/** The ids of the rows shown, once they equal `expected` (newest first). */
async function rowsBecome(page: Page, expected: string[], what: string): Promise<void> {
  let last: string[] = [];
  try {
    await eventually(
      async () => {
        const empty = await page.locator('p.empty').count();
        last = await page
          .locator('tr[data-event-id]')
          .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-event-id') ?? ''));
        if (expected.length === 0) return empty > 0 && last.length === 0 ? true : undefined;
        return JSON.stringify(last) === JSON.stringify(expected) ? true : undefined;
      },
      10_000,
      what,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; rows: ${JSON.stringify(last)}`);
  }
}

test(
  'dashboard events search and time range at 390 and 1280 px',
  { timeout: 180_000 },
  async (t) => {
    const relay = await startRelay();
    t.after(async () => {
      await relay.stop();
      await removeDir(relay.dataDir);
    });
    // No agent: the events stay queued.
    const channel = await relay.api('POST', '/api/channels', { name: 'shop' });
    const send = async (headers: Record<string, string>, body: string) => {
      const res = await request(`${relay.url}/h/${channel.id}/orders`, {
        method: 'POST',
        headers,
        body,
      });
      assert.equal(res.statusCode, 202);
      return ((await res.body.json()) as { id: string }).id;
    };
    const first = await send({ 'x-shop-topic': 'Orders/Paid' }, '{"order":1}');
    const second = await send({}, '{"order":2,"note":"<b>Orders/PAID</b> été"}');
    const third = await send({ 'orders-paid': 'header name only' }, 'nothing');
    const received = async (id: string) =>
      Date.parse(
        ((await relay.api('GET', `/api/events/${id}`)) as { receivedAt: string }).receivedAt,
      );
    const firstAt = await received(first);
    const lastAt = await received(third);
    // The browser runs in UTC: a datetime-local value is then the ISO time without its zone.
    const local = (ms: number) => new Date(ms).toISOString().slice(0, 19);

    const browser = await launchChromium();
    t.after(() => browser.close());

    for (const width of [390, 1280]) {
      const context = await browser.newContext({
        viewport: { width, height: 844 },
        timezoneId: 'UTC',
      });
      const page = await context.newPage();
      const problems = watchProblems(page);
      await logIn(page, relay.url, relay.token);
      await rowsBecome(page, [third, second, first], `${width}: every event`);

      // Every status is offered.
      const statuses = await page
        .locator('#filter-status option')
        .evaluateAll((o) => o.map((x) => (x as unknown as { value: string }).value));
      assert.deepEqual(statuses, [
        '',
        'queued',
        'delivering',
        'delivered',
        'failed',
        'filtered',
        'rejected',
      ]);

      // Text in header values and bodies, any case; a header's name is no match.
      await page.getByLabel('Search', { exact: true }).fill('orders/paid');
      await page.getByLabel('Search', { exact: true }).press('Enter');
      await rowsBecome(page, [second, first], `${width}: the search`);
      await textMatches(page.locator('.live-count'), /search again for events that arrive/, 'live');
      await textMatches(
        page.locator('.search-note'),
        /Searched 3 events, back to the oldest/,
        'note',
      );
      await assertNoSidewaysScroll(page, `search at ${width}`);
      await screenshot(page, `dashboard-${width}-events-search`);

      await page.getByLabel('Search', { exact: true }).fill('ÉTÉ');
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await rowsBecome(page, [second], `${width}: UTF-8 body text`);
      await page.getByLabel('Search', { exact: true }).fill(third);
      await page.getByLabel('Search', { exact: true }).press('Enter');
      await rowsBecome(page, [third], `${width}: an event id`);
      await page.getByRole('button', { name: 'Clear search and range' }).click();
      await rowsBecome(page, [third, second, first], `${width}: cleared`);

      // A time range: To is exclusive; From is inclusive.
      await page.getByLabel('To').fill(local(firstAt - (firstAt % 1000)));
      await rowsBecome(page, [], `${width}: nothing before the first event`);
      await textMatches(page.locator('p.empty'), /No events match this filter/, 'empty');
      await page.getByLabel('To').fill('');
      await page.getByLabel('From').fill(local(lastAt - (lastAt % 1000) + 1000));
      await rowsBecome(page, [], `${width}: nothing after the last event`);
      await page.getByLabel('From').fill(local(firstAt - (firstAt % 1000)));
      await rowsBecome(page, [third, second, first], `${width}: from the first event on`);
      await page.getByLabel('Search', { exact: true }).fill('order');
      await page.getByLabel('Search', { exact: true }).press('Enter');
      await rowsBecome(page, [second, first], `${width}: a search in a range`);
      await assertNoSidewaysScroll(page, `range at ${width}`);
      await screenshot(page, `dashboard-${width}-events-range`);
      await page.getByRole('button', { name: 'Clear search and range' }).click();
      await rowsBecome(page, [third, second, first], `${width}: cleared again`);
      assert.equal(await page.getByLabel('From').inputValue(), '');

      assert.deepEqual(problems, [], `no script error or CSP violation at ${width}`);
      await context.close();
    }
  },
);
