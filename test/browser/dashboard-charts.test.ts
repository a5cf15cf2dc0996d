/**
 * The charts view in Chromium at 390 px (a phone) and 1280 px: the last hour and the last day
 * drawn as inline SVG from the store's statistics (what went through a real relay and agent),
 * totals as text, nothing scrolling sideways, no CSP violation. Screenshots to test/artifacts/.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startApp } from '../helpers/app.ts';
import { launchChromium } from '../helpers/browser.ts';
import {
  assertNoSidewaysScroll,
  logIn,
  screenshot,
  textMatches,
  watchProblems,
} from '../helpers/dashboard.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
} from '../helpers/processes.ts';

test(
  'charts at 390 and 1280 px: the last hour and day from the store',
  { timeout: 180_000 },
  async (t) => {
    const app = await startApp((req, res) => {
      res.statusCode = req.url.includes('/fail') ? 500 : 200;
      res.end();
    });
    t.after(() => app.close());
    const relay = await startRelay();
    t.after(async () => {
      await relay.stop();
      await removeDir(relay.dataDir);
    });
    const ch = await relay.api('POST', '/api/channels', {
      name: 'charts',
      retry: { delaysMs: [] },
    });
    const { stateDir } = await pairAgent(relay, [ch.id], 'charts-agent');
    const agent = await startAgent(stateDir, [{ channel: 'charts', target: `${app.url}/in` }]);
    t.after(async () => {
      await agent.stop();
      await removeDir(stateDir);
    });
    const paths = ['/a', '/b', '/c', '/d', '/fail'];
    for (const p of paths) {
      const res = await fetch(`${relay.url}/h/${ch.id}${p}`, { method: 'POST', body: '{}' });
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      await waitForEventStatus(relay, id, p === '/fail' ? 'failed' : 'delivered');
    }

    const browser = await launchChromium();
    t.after(() => browser.close());
    for (const width of [390, 1280]) {
      const context = await browser.newContext({ viewport: { width, height: 844 } });
      const page = await context.newPage();
      const problems = watchProblems(page);
      await logIn(page, relay.url, relay.token);
      await page
        .getByRole('navigation', { name: 'Sections' })
        .getByRole('link', { name: 'Charts' })
        .click();
      await page.getByRole('heading', { name: 'Charts', level: 2 }).waitFor();
      assert.match(page.url(), /#\/charts$/);

      for (const range of ['hour', 'day']) {
        const section = page.locator(`section[data-range="${range}"]`);
        await textMatches(
          section.locator('[data-totals]'),
          /5 received · 4 delivered · 1 failed · latency p50 \d/,
          `the ${range}'s totals`,
        );
        const charts = section.locator('svg[role="img"]');
        assert.equal(await charts.count(), 2, `two charts for the ${range}`);
        // Each series is drawn: a line, or a dot where a value stands alone.
        for (const key of ['received', 'delivered', 'failed', 'p50', 'p99']) {
          const marks = section.locator(`path.series-${key}:not([d=""]), circle.series-${key}`);
          assert.ok((await marks.count()) > 0, `${range}: ${key} is drawn`);
        }
        const label = await charts.first().getAttribute('aria-label');
        assert.match(label ?? '', /events received, delivered and failed/);
      }
      // The hour's count chart: 60 points; the line goes through each of them.
      const hourLine = await page
        .locator('section[data-range="hour"] path.series-received')
        .getAttribute('d');
      assert.equal((hourLine ?? '').split(/[ML]/).filter((s) => s.trim() !== '').length, 60);
      // The lines' colours come from the stylesheet (no inline style under the CSP).
      // A string: functions given to evaluate() would carry the test transpiler's helpers.
      const stroke = await page.evaluate(
        `getComputedStyle(document.querySelector('section[data-range="hour"] path.series-failed')).stroke`,
      );
      assert.equal(stroke, 'rgb(179, 38, 30)');

      await assertNoSidewaysScroll(page, `charts at ${width}`);
      const box = await page.locator('.topbar button').boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= width, `Log out is inside ${width} px`);
      await screenshot(page, `dashboard-${width}-charts`);
      assert.deepEqual(problems, []);
      await context.close();
    }
  },
);
