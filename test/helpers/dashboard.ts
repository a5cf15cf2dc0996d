/** Driving the dashboard in Chromium: log in, wait for text, check the layout, keep screenshots. */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { ROOT, eventually } from './processes.ts';

/** Screenshots are kept here as test artifacts (ignored by git). */
export const ARTIFACTS = path.join(ROOT, 'test', 'artifacts');

/** Waits until the locator's first match has text matching `re`; returns that text. */
export async function textMatches(locator: Locator, re: RegExp, what: string): Promise<string> {
  let last = '';
  try {
    return await eventually(
      async () => {
        last = (await locator.count()) > 0 ? await locator.first().innerText() : '';
        return re.test(last) ? last : undefined;
      },
      10_000,
      what,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last text: ${JSON.stringify(last)}`);
  }
}

/** Script errors and Content-Security-Policy violations, collected for a final assertion. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  return problems;
}

export async function logIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Events', level: 2 }).waitFor();
}

/** The page is never wider than the viewport: nothing scrolls sideways. */
export async function assertNoSidewaysScroll(page: Page, what: string): Promise<void> {
  // A string: functions given to evaluate() would carry the test transpiler's helpers.
  const { doc, body, viewport } = (await page.evaluate(
    '({ doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, ' +
      'viewport: window.innerWidth })',
  )) as { doc: number; body: number; viewport: number };
  assert.ok(
    doc <= viewport && body <= viewport,
    `${what}: the document is ${doc} px wide (body ${body} px) in a ${viewport} px viewport`,
  );
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** WCAG relative luminance contrast of two `rgb(…)`/`rgba(…)` colours (alpha ignored). */
export function contrast(a: string, b: string): number {
  const lum = (c: string) => {
    const [r, g, bl] = (c.match(/[\d.]+/g) ?? []).slice(0, 3).map((v) => {
      const s = Number(v) / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (bl ?? 0);
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}
