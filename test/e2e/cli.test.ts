/**
 * The admin CLI against a running relay, as an operator uses it: tables by default, `--json`
 * for scripts, errors that say what to do, and `tail` following events live.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import {
  Proc,
  ROOT,
  eventually,
  removeDir,
  startRelay,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const run = promisify(execFile);
let relay: RelayHandle;

before(async () => {
  relay = await startRelay();
});

after(async () => {
  await relay?.stop();
  await removeDir(relay.dataDir);
});

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'server/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, POSTERN_RELAY_URL: relay.url, POSTERN_ADMIN_TOKEN: relay.token, ...env },
  });
}

test('channel create/list/show, agent add/list, with tables and --json', async () => {
  const created = await cli([
    'channel',
    'create',
    'cli-gh',
    '--verify',
    'github',
    '--secret',
    'cli-secret-1',
  ]);
  assert.match(created.stdout, /Created channel cli-gh \(ch_[0-9a-z]{26}\)/);
  assert.match(created.stdout, /Ingress URL: http:\/\/localhost:\d+\/h\/ch_/);
  const table = await cli(['channel', 'list']);
  assert.match(table.stdout, /^ID\s+NAME\s+VERIFY\s+MODE\s+INGRESS URL$/m);
  assert.match(table.stdout, /cli-gh\s+github\s+async/);
  const json = JSON.parse((await cli(['channel', 'list', '--json'])).stdout) as {
    channels: { name: string; verify: unknown }[];
  };
  assert.deepEqual(
    json.channels.map((c) => c.name),
    ['cli-gh'],
  );
  assert.equal(JSON.stringify(json).includes('cli-secret-1'), false, 'no secret in the output');
  const shown = JSON.parse((await cli(['channel', 'show', 'cli-gh', '--json'])).stdout) as {
    name: string;
  };
  assert.equal(shown.name, 'cli-gh');

  const updated = await cli([
    'channel',
    'update',
    'cli-gh',
    '--sync-timeout-ms',
    '2500',
    '--retry-delays',
    '100,200',
    '--rate-limit',
    '5/10',
    '--ordering-key',
    'json:repository.full_name',
  ]);
  assert.match(updated.stdout, /Updated channel cli-gh/);
  const after = JSON.parse((await cli(['channel', 'show', 'cli-gh', '--json'])).stdout) as Record<
    string,
    unknown
  >;
  assert.deepEqual(after['response'], { mode: 'sync', timeoutMs: 2500 });
  assert.deepEqual(after['retry'], { delaysMs: [100, 200] });
  assert.deepEqual(after['rateLimit'], { perSecond: 5, burst: 10 });
  assert.equal(after['ordered'], true);
  assert.deepEqual(after['orderingKey'], { jsonField: 'repository.full_name' });
  await assert.rejects(
    cli(['channel', 'update', 'cli-gh', '--rate-limit', 'fast']),
    (err: { stderr: string }) => {
      assert.match(err.stderr, /--rate-limit: expected a whole number, got "fast"/);
      return true;
    },
  );

  const added = await cli(['agent', 'add', 'cli-agent', '--channel', 'cli-gh']);
  assert.match(
    added.stdout,
    /One-time pairing code \(expires [^)]+\): [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}/,
  );
  const agents = await cli(['agent', 'list']);
  assert.match(agents.stdout, /cli-agent\s+no\s+no/);
});

test('errors say what to do', async () => {
  await assert.rejects(
    cli(['channel', 'list'], { POSTERN_ADMIN_TOKEN: 'wrong-token-000000' }),
    (err: { stderr: string; code: number }) => {
      assert.match(
        err.stderr,
        /admin token missing or wrong \(check --token-file \/ POSTERN_ADMIN_TOKEN\)/,
      );
      assert.equal(err.code, 1);
      return true;
    },
  );
  await assert.rejects(
    cli(['channel', 'list'], { POSTERN_RELAY_URL: 'http://127.0.0.1:1' }),
    (err: { stderr: string }) => {
      assert.match(
        err.stderr,
        /^postern-relay: cannot reach the relay at http:\/\/127\.0\.0\.1:1 \(connection refused\): is it running\?/,
      );
      return true;
    },
  );
  await assert.rejects(cli(['channel', 'frobnicate']), (err: { stderr: string }) => {
    assert.match(
      err.stderr,
      /unknown command "channel frobnicate"; did you mean "channel [a-z]+"\?/,
    );
    return true;
  });
  await assert.rejects(cli(['events', 'replay']), (err: { stderr: string }) => {
    assert.match(err.stderr, /events replay needs an event ID, or a filter/);
    return true;
  });
});

test('tail prints events live; events list and replay', async () => {
  await cli(['channel', 'create', 'cli-tail']);
  const channel = await relay.api('GET', '/api/channels/cli-tail');
  const tail = new Proc([path.join(ROOT, 'server/main.ts'), 'tail', '--channel', 'cli-tail'], {
    POSTERN_RELAY_URL: relay.url,
    POSTERN_ADMIN_TOKEN: relay.token,
  });
  try {
    await eventually(
      () => (tail.raw.some((l) => l.includes('tailing events live')) ? true : undefined),
      20_000,
      'tail to start',
    );
    const res = await request(`${relay.url}/h/${channel.id}/push?x=1`, {
      method: 'POST',
      body: 'hello',
    });
    const { id } = (await res.body.json()) as { id: string };
    const line = await eventually(
      () => tail.raw.find((l) => l.startsWith(id)),
      20_000,
      'the event in tail',
    );
    assert.match(
      line,
      // The channel by name; a relay that says why the event waits adds that last.
      new RegExp(
        `^${id}\\s+\\S+\\s+cli-tail\\s+queued\\s+0\\s+POST\\s+/push\\?x=1\\s+5(\\s+\\S.*)?$`,
      ),
    );

    const list = await cli(['events', 'list', '--channel', 'cli-tail']);
    assert.match(list.stdout, new RegExp(`${id}.*queued`));
    const replayed = await cli(['events', 'replay', id]);
    assert.match(replayed.stdout, new RegExp(`Queued ${id} again`));
    const bulk = await cli(['events', 'replay', '--channel', 'cli-tail', '--status', 'failed']);
    assert.match(bulk.stdout, /Queued 0 events again/);
  } finally {
    await tail.kill();
  }
});
