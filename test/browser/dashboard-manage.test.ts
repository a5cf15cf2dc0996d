/**
 * Managing the relay from the dashboard, in Chromium against a real relay: create a channel
 * with a verified provider, edit every setting of another (verification, sync, retries,
 * ordering, rate limit), change an agent's channels, and issue a new pairing code whose printed
 * command pairs the agent. Secrets are write-only: never shown, never left in the page.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { launchChromium } from '../helpers/browser.ts';
import { logIn, screenshot, textMatches, watchProblems } from '../helpers/dashboard.ts';
import { ROOT, removeDir, startRelay, tempDir } from '../helpers/processes.ts';

const run = promisify(execFile);

test(
  'dashboard: create and edit channels, change an agent, pair again',
  {
    timeout: 120_000,
  },
  async (t) => {
    const relay = await startRelay();
    t.after(async () => {
      await relay.stop();
      await removeDir(relay.dataDir);
    });
    const hooks = await relay.api('POST', '/api/channels', { name: 'hooks' });
    const other = await relay.api('POST', '/api/channels', { name: 'other' });
    const agent = await relay.api('POST', '/api/agents', { name: 'laptop', channels: ['hooks'] });

    const browser = await launchChromium();
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = watchProblems(page);
    await logIn(page, relay.url, relay.token);
    await page.getByRole('link', { name: 'Channels' }).click();

    // Create: a Stripe-verified channel. The secret goes to the relay and nowhere else.
    const create = page.getByRole('form', { name: 'New channel' });
    await create.getByLabel('Name').fill('billing');
    await create.getByLabel('Provider').selectOption('stripe');
    await create.getByLabel('Secret', { exact: true }).fill('whsec_created-secret');
    await create.getByRole('button', { name: 'Create channel' }).click();
    await textMatches(page.getByRole('status').filter({ hasText: 'billing' }), /created/, 'note');
    const billing = (await relay.api('GET', '/api/channels/billing')) as Record<string, any>;
    assert.equal(billing['verify'].provider, 'stripe');
    assert.equal(JSON.stringify(billing).includes('whsec_created-secret'), false);
    // The form starts over: no provider, no secret field.
    assert.equal(await create.getByLabel('Provider').inputValue(), '');
    assert.equal(await create.getByLabel('Secret', { exact: true }).count(), 0);

    // Edit every setting of "hooks".
    await page.getByRole('button', { name: 'Edit hooks' }).click();
    const edit = page.getByRole('form', { name: 'Edit hooks' });
    await edit.getByLabel('Change verification').check();
    await edit.getByLabel('Provider').selectOption('hmac');
    await edit.getByLabel('Secret', { exact: true }).fill('hmac-edited-secret');
    await edit.getByLabel('Signature header').fill('X-Signature');
    await edit.getByLabel('Algorithm').selectOption('sha512');
    await edit.getByLabel('Encoding').selectOption('base64');
    await edit.getByLabel('Prefix (optional)').fill('v1=');
    await edit.getByLabel("Sync: return the app's own answer").check();
    await edit.getByLabel('Sync timeout (ms)').fill('2500');
    await edit.getByLabel('Retry delays').fill('1s, 10s, 2m');
    await edit.getByLabel('Ordered: one event at a time').check();
    await edit.getByLabel('Ordering key').selectOption('jsonField');
    await edit.getByLabel('JSON field (dotted path)').fill('repository.full_name');
    await edit.getByLabel('Rate limit (requests per second)').fill('5');
    await edit.getByLabel('Burst').fill('8');
    await edit.getByLabel('Largest body (bytes)').fill('4096');
    await edit.getByLabel('Methods').fill('post');
    await edit.getByLabel('Paths').fill('"", /push, /github/*');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await textMatches(page.getByRole('status').filter({ hasText: 'hooks' }), /saved/, 'saved');
    const saved = (await relay.api('GET', `/api/channels/${hooks.id}`)) as Record<string, any>;
    assert.deepEqual(saved['verify'], {
      provider: 'hmac',
      header: 'X-Signature',
      algorithm: 'sha512',
      encoding: 'base64',
      prefix: 'v1=',
      rotating: false,
    });
    assert.deepEqual(saved['response'], { mode: 'sync', timeoutMs: 2500 });
    assert.deepEqual(saved['retry'], { delaysMs: [1000, 10_000, 120_000] });
    assert.equal(saved['ordered'], true);
    assert.deepEqual(saved['orderingKey'], { jsonField: 'repository.full_name' });
    assert.deepEqual(saved['rateLimit'], { perSecond: 5, burst: 8 });
    assert.equal(saved['maxBodyBytes'], 4096);
    assert.deepEqual(saved['methods'], ['POST']);
    assert.deepEqual(saved['paths'], ['', '/push', '/github/*']);
    const row = page.locator(`tr[data-channel-id="${hooks.id}"]`);
    await textMatches(row, /hmac[\s\S]*sync \(2500 ms\)[\s\S]*1s, 10s, 2m/, 'the row');

    // An edit that leaves verification alone keeps the secret (not sent at all).
    await page.getByRole('button', { name: 'Edit hooks' }).click();
    await edit.getByLabel('Retry delays').fill('');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await textMatches(row, /none/, 'no retries');
    const kept = (await relay.api('GET', `/api/channels/${hooks.id}`)) as Record<string, any>;
    assert.deepEqual(kept['retry'], { delaysMs: [] });
    assert.equal(kept['verify'].provider, 'hmac');
    // A mistake is named, and nothing is sent.
    await page.getByRole('button', { name: 'Edit hooks' }).click();
    await edit.getByLabel('Retry delays').fill('5 minutes');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await textMatches(edit.getByRole('alert'), /"5" is not a delay/, 'the mistake');
    await edit.getByRole('button', { name: 'Cancel' }).click();

    const html = await page.content();
    for (const secret of ['whsec_created-secret', 'hmac-edited-secret']) {
      assert.equal(html.includes(secret), false, `${secret} is not left in the page`);
    }
    await screenshot(page, 'dashboard-1280-channels-edited');

    // The agent: grant it "other" instead of "hooks".
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.getByRole('button', { name: 'Change the channels of laptop' }).click();
    const grants = page.getByRole('form', { name: 'Channels of laptop' });
    await grants.getByLabel('hooks').uncheck();
    await grants.getByLabel('other').check();
    await grants.getByRole('button', { name: 'Save channels' }).click();
    await textMatches(page.getByRole('status').filter({ hasText: 'laptop' }), /1 channel/, 'note');
    const agents = (await relay.api('GET', '/api/agents')) as { agents: Record<string, any>[] };
    assert.deepEqual(agents.agents.find((a) => a.id === agent.id)?.['channels'], [other.id]);
    await textMatches(page.locator(`tr[data-agent-id="${agent.id}"]`), /other/, 'the row');

    // A new pairing code: the printed command pairs the agent.
    await page.getByRole('button', { name: 'New pairing code for laptop' }).click();
    const command = await textMatches(page.locator('.pairing pre'), /--code \S+/, 'the command');
    const stateDir = await tempDir('postern-agent-');
    t.after(() => removeDir(stateDir));
    assert.match(
      command,
      /^npm run agent -- pair --relay http:\/\/\S+ --code \S+ --state-dir \.\/agent-state$/,
    );
    const args = command
      .replace(/^npm run agent -- /, '')
      .replace('./agent-state', stateDir)
      .split(' ');
    await run(process.execPath, ['--import', 'tsx', 'agent/main.ts', ...args], { cwd: ROOT });
    const paired = (await relay.api('GET', '/api/agents')) as { agents: Record<string, any>[] };
    assert.equal(paired.agents.find((a) => a.id === agent.id)?.['paired'], true);

    assert.deepEqual(problems, []);
  },
);
