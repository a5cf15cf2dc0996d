/**
 * `npm run build`: both bundles exist, the agent bundle holds no server code, the relay bundle
 * serves from a directory holding only it and dist/node_modules, and the single-executable
 * agent runs alone in an empty directory (no node_modules): --version, pair and run,
 * delivering a webhook end to end.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import { startApp, type TestApp } from './helpers/app.ts';
import {
  Proc,
  ROOT,
  removeDir,
  startRelay,
  tempDir,
  waitForEventStatus,
  type RelayHandle,
} from './helpers/processes.ts';

const run = promisify(execFile);
let dir: string;
let exe: string;

before(async () => {
  await run('npm', ['run', 'build'], { cwd: ROOT, timeout: 180_000 });
  dir = await tempDir('postern-exe-');
  exe = path.join(dir, 'postern-agent');
  await copyFile(path.join(ROOT, 'dist', 'postern-agent'), exe);
});

after(async () => {
  await removeDir(dir);
});

test('the agent bundle contains no server code', async () => {
  const bundle = await readFile(path.join(ROOT, 'dist', 'postern-agent.mjs'), 'utf8');
  for (const marker of [
    'lowdb',
    'koa-compose',
    '@koa/router',
    'server/relay.ts',
    'EmbeddedStore',
  ]) {
    assert.equal(bundle.includes(marker), false, `agent bundle mentions ${marker}`);
  }
  const relay = await readFile(path.join(ROOT, 'dist', 'postern-relay.mjs'), 'utf8');
  assert.ok(
    relay.includes('EmbeddedStore'),
    'the relay bundle does contain the store (the check can fail)',
  );
});

test('the relay bundle runs alone with its node_modules: --version, serve, store a webhook', async (t) => {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  // What an operator copies to the relay host: the bundle and dist/node_modules (the store's
  // native engine), nothing else.
  const host = await tempDir('postern-relay-bundle-');
  t.after(() => removeDir(host));
  await copyFile(
    path.join(ROOT, 'dist', 'postern-relay.mjs'),
    path.join(host, 'postern-relay.mjs'),
  );
  await cp(path.join(ROOT, 'dist', 'node_modules'), path.join(host, 'node_modules'), {
    recursive: true,
  });
  const bundle = path.join(host, 'postern-relay.mjs');
  const { stdout } = await run(process.execPath, [bundle, '--version'], { cwd: host });
  assert.equal(stdout.trim(), pkg.version);
  const token = 'bundle-test-admin-token-0001';
  const relay = new Proc([], { POSTERN_ADMIN_TOKEN: token }, host, [
    process.execPath,
    bundle,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--data-dir',
    'data',
  ]);
  t.after(() => relay.kill());
  const url = String((await relay.waitForMsg('relay listening'))['url']);
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const channel = await request(`${url}/api/channels`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ name: 'bundle' }),
  });
  const { id: channelId } = (await channel.body.json()) as { id: string };
  const res = await request(`${url}/h/${channelId}`, { method: 'POST', body: 'stored' });
  assert.equal(res.statusCode, 202);
  const { id } = (await res.body.json()) as { id: string };
  const event = await request(`${url}/api/events/${id}`, { headers: auth });
  assert.equal(((await event.body.json()) as { status: string }).status, 'queued');
  // The admin API's document is in the bundle: the same bytes as docs/openapi.json.
  const document = await request(`${url}/api/openapi.json`, { headers: auth });
  assert.equal(document.statusCode, 200);
  assert.equal(
    await document.body.text(),
    await readFile(path.join(ROOT, 'docs/openapi.json'), 'utf8'),
  );
});

test('the single executable runs alone: --version, pair, run, deliver', async (t) => {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  const { stdout } = await run(exe, ['--version'], { cwd: dir, env: { PATH: '/usr/bin:/bin' } });
  assert.equal(stdout.trim(), pkg.version);

  const app: TestApp = await startApp();
  const relay: RelayHandle = await startRelay();
  t.after(async () => {
    await relay.stop();
    await app.close();
    await removeDir(relay.dataDir);
  });
  const channel = await relay.api('POST', '/api/channels', { name: 'exe' });
  const added = await relay.api('POST', '/api/agents', { name: 'exe-agent', channels: ['exe'] });
  const stateDir = path.join(dir, 'state');
  await run(
    exe,
    ['pair', '--relay', relay.url, '--code', added.pairingCode, '--state-dir', stateDir],
    {
      cwd: dir,
      env: { PATH: '/usr/bin:/bin', HOME: dir },
    },
  );
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, `routes:\n  - channel: exe\n    target: ${app.url}/in\n`);
  const agent = new Proc([], {}, dir, [exe, 'run', '--config', config, '--state-dir', stateDir]);
  t.after(() => agent.kill());
  await agent.waitForMsg('connected to the relay');
  const res = await request(`${relay.url}/h/${channel.id}/x`, { method: 'POST', body: 'from-sea' });
  const { id } = (await res.body.json()) as { id: string };
  assert.equal(res.statusCode, 202);
  await waitForEventStatus(relay, id, 'delivered');
  assert.equal(app.received.length, 1);
  assert.equal(app.received[0]!.url, '/in/x');
  assert.equal(app.received[0]!.body.toString(), 'from-sea');
});
