/**
 * Secrets and payloads at rest, and on the command line, as a local user without the relay's
 * uid would go after them: files under the data dir readable by others (a umask of 000), the
 * verification secrets in a copy of state.json, and the admin token in /proc/<pid>/cmdline.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after } from 'node:test';
import { promisify } from 'node:util';
import {
  ROOT,
  removeDir,
  spawnRelay,
  startRelay,
  tempDir,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const run = promisify(execFile);
const SECRET = 'gh-at-rest-secret-7d1e0b';
const PREVIOUS = 'gh-at-rest-previous-c2a94f';
const TOKEN = 'at-rest-admin-token-00000001';
const env = { POSTERN_ADMIN_TOKEN: TOKEN };
const running: RelayHandle[] = [];
const dirs: string[] = [];
let dataDir = '';
let channelId = '';

after(async () => {
  for (const r of running) await r.stop();
  for (const d of dirs) await removeDir(d);
});

async function start(dir: string, umask?: number): Promise<RelayHandle> {
  const relay = await startRelay({ dataDir: dir, env, ...(umask === undefined ? {} : { umask }) });
  running.push(relay);
  return relay;
}

async function stop(relay: RelayHandle): Promise<void> {
  await relay.stop();
  running.splice(running.indexOf(relay), 1);
}

/** Every entry under `dir` (and `dir` itself as '.'), with its type and permission bits. */
async function walk(dir: string): Promise<Map<string, { mode: number; file: boolean }>> {
  const out = new Map<string, { mode: number; file: boolean }>();
  const visit = async (p: string, rel: string) => {
    const s = await lstat(p);
    out.set(rel, { mode: s.mode & 0o777, file: s.isFile() });
    if (s.isDirectory()) {
      for (const name of await readdir(p)) await visit(path.join(p, name), path.join(rel, name));
    }
  };
  await visit(dir, '.');
  return out;
}

/** Every byte of every file under `dir`, searched for each secret in clear, hex and base64. */
async function filesHolding(dir: string, secrets: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const [rel, { file }] of await walk(dir)) {
    if (!file) continue;
    const bytes = await readFile(path.join(dir, rel));
    for (const s of secrets) {
      const forms = [s, Buffer.from(s).toString('hex'), Buffer.from(s).toString('base64')];
      if (forms.some((f) => bytes.includes(f))) found.push(`${rel} holds ${s}`);
    }
  }
  return found;
}

async function post(relay: RelayHandle, id: string, signedWith: string | null): Promise<number> {
  const body = Buffer.from(`{"n":${Math.random()}}`);
  const key = signedWith ?? randomBytes(16).toString('hex');
  const signature = `sha256=${createHmac('sha256', key).update(body).digest('hex')}`;
  const res = await fetch(`${relay.url}/h/${id}`, {
    method: 'POST',
    body,
    headers: { 'x-hub-signature-256': signature, 'content-type': 'application/json' },
  });
  await res.arrayBuffer();
  return res.status;
}

/** Starts a relay that must refuse: its exit code and its one `postern-relay: …` line. */
async function refusedStart(
  dir: string,
): Promise<{ code: number | null; line: string; all: string }> {
  const proc = await spawnRelay(dir, { env });
  const code = await proc.exited;
  const lines = proc.raw.filter((l) => l.startsWith('postern-relay: '));
  assert.equal(lines.length, 1, proc.raw.join('\n'));
  return { code, line: lines[0]!, all: proc.raw.join('\n') };
}

test(
  'umask 000: all under the data dir is owner-only, no file holds a secret, and it still verifies',
  { embeddedOnly: 'its files and state.json' },
  async () => {
    dataDir = path.join(await tempDir('postern-at-rest-'), 'data');
    dirs.push(path.dirname(dataDir));
    const relay = await start(dataDir, 0);
    const channel = await relay.api<{ id: string }>('POST', '/api/channels', {
      name: 'at-rest',
      verify: { provider: 'github', secret: SECRET, previousSecret: PREVIOUS },
    });
    channelId = channel.id;
    const status = await readFile(`/proc/${relay.proc.child.pid}/status`, 'utf8');
    assert.match(status, /^Umask:\s+0000$/m, 'the relay really runs with umask 000');
    assert.equal(await post(relay, channelId, SECRET), 202);
    assert.equal(await post(relay, channelId, PREVIOUS), 202);
    assert.equal(await post(relay, channelId, null), 401);

    const entries = await walk(dataDir);
    assert.deepEqual([...entries.keys()].sort(), [
      '.',
      'events.mdb',
      'events.mdb-lock',
      'relay.lock',
      'secrets.key',
      'state.json',
    ]);
    for (const [rel, { mode, file }] of entries) {
      assert.equal(mode, file ? 0o600 : 0o700, `${rel} is ${mode.toString(8)}`);
    }
    assert.deepEqual(await filesHolding(dataDir, [SECRET, PREVIOUS]), []);
    const state = await readFile(path.join(dataDir, 'state.json'), 'utf8');
    assert.match(state, /"secret": "enc:v1:[A-Za-z0-9+/]+=*"/);

    await stop(relay);
    const again = await start(dataDir, 0);
    assert.equal(await post(again, channelId, SECRET), 202, 'verifies after a restart');
    assert.equal(await post(again, channelId, null), 401);
    await stop(again);
  },
);

test(
  'the key file replaced or removed: the relay refuses to start and says what to do',
  { embeddedOnly: 'secrets sealed in state.json' },
  async () => {
    assert.ok(channelId, 'needs the data dir of the test before');
    const keyFile = path.join(dataDir, 'secrets.key');
    const rightKey = await readFile(keyFile, 'utf8');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`);
    const replaced = await refusedStart(dataDir);
    assert.equal(replaced.code, 1);
    assert.equal(
      replaced.line,
      `postern-relay: ${path.join(dataDir, 'state.json')}: the secrets of channel ${channelId} do not open with the key from ${keyFile}, which is not the key they were encrypted with. Start with that key (restore it from its backup); if it is lost, start once with --forget-lost-secrets and set the secrets of the channels it names again`,
    );
    await rm(keyFile);
    const removed = await refusedStart(dataDir);
    assert.equal(removed.code, 1);
    assert.equal(
      removed.line,
      `postern-relay: ${path.join(dataDir, 'state.json')} holds encrypted channel secrets but ${keyFile} is missing: restore it from its backup, or give the key they were encrypted with (POSTERN_SECRETS_KEY or --secrets-key-file); if it is lost, start once with --forget-lost-secrets`,
    );
    for (const out of [replaced.all, removed.all]) {
      for (const s of [SECRET, PREVIOUS, rightKey.trim()]) assert.equal(out.includes(s), false);
    }
    await writeFile(keyFile, rightKey, { mode: 0o600 });
    const relay = await start(dataDir);
    assert.equal(await post(relay, channelId, SECRET), 202);
    await stop(relay);
  },
);

test(
  'a data dir of the previous release (plaintext secrets, 0755/0644) is converted and tightened on start',
  { embeddedOnly: 'journal and state.json conversion' },
  async () => {
    const parent = await tempDir('postern-at-rest-old-');
    dirs.push(parent);
    const dir = path.join(parent, 'data');
    await mkdir(path.join(dir, 'journal'), { recursive: true });
    const id = 'ch_0123456789abcdefghjkmnpqrs';
    const legacy = {
      adminTokenHash: createHash('sha256').update(TOKEN).digest('hex'),
      channels: [
        {
          id,
          name: 'legacy',
          verify: { provider: 'github', secret: SECRET },
          response: { mode: 'async', timeoutMs: 10_000 },
          retry: { delaysMs: [5_000] },
          ordered: false,
          orderingKey: null,
          rateLimit: null,
          maxBodyBytes: 1_048_576,
          createdAt: 1_700_000_000_000,
        },
      ],
      agents: [],
      pairings: [],
      usedTokenIds: [],
    };
    await writeFile(path.join(dir, 'state.json'), JSON.stringify(legacy, null, 2));
    await writeFile(path.join(dir, 'admin-token'), `${TOKEN}\n`);
    for (const [rel, mode] of [
      ['.', 0o755],
      ['journal', 0o755],
      ['state.json', 0o644],
      ['admin-token', 0o644],
    ] as const) {
      await chmod(path.join(dir, rel), mode);
    }

    const relay = await start(dir);
    const lines = relay.proc.lines;
    const tightened = lines
      .filter(
        (l) =>
          l.msg === 'tightened the permissions of a data-dir entry that other users could reach',
      )
      .map((l) => `${path.relative(dir, String(l['path'])) || '.'} ${String(l['mode'])}`)
      .sort();
    assert.deepEqual(tightened, ['. 0755', 'admin-token 0644', 'journal 0755', 'state.json 0644']);
    const converted = lines.filter((l) => l.msg === 'encrypted 1 channel secrets at rest');
    assert.equal(converted.length, 1);
    assert.equal(converted[0]!['level'], 40, 'a warning');
    for (const [rel, { mode, file }] of await walk(dir)) {
      assert.equal(mode, file ? 0o600 : 0o700, `${rel} is ${mode.toString(8)}`);
    }
    assert.deepEqual(await filesHolding(dir, [SECRET]), []);
    assert.equal(await post(relay, id, SECRET), 202);
    assert.equal(await post(relay, id, null), 401);
    await stop(relay);
  },
);

test('admin CLI: --token warns that the process list shows it; --token-file and the environment do not', async () => {
  const fresh = !dataDir;
  if (fresh) {
    // The tests before it, which made the data dir and its channel, are the embedded store's.
    dataDir = path.join(await tempDir('postern-at-rest-'), 'data');
    dirs.push(path.dirname(dataDir));
  }
  const relay = await start(dataDir);
  if (fresh) {
    await relay.api('POST', '/api/channels', {
      name: 'at-rest',
      verify: { provider: 'github', secret: SECRET },
    });
  }
  const tokenFile = path.join(path.dirname(dataDir), 'token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  // The relay took its token from the environment: give the default file by hand.
  await writeFile(path.join(dataDir, 'admin-token'), `${TOKEN}\n`, { mode: 0o600 });
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'server/main.ts'), ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        POSTERN_RELAY_URL: relay.url,
        POSTERN_ADMIN_TOKEN: '',
        POSTERN_ADMIN_TOKEN_FILE: '',
        POSTERN_DATA_DIR: '',
        ...extra,
      },
    });
  const warning =
    'postern-relay: warning: --token is visible to other local users in the process list; use --token-file FILE or POSTERN_ADMIN_TOKEN instead\n';

  const onArgv = await cli(['channel', 'list', '--token', TOKEN]);
  assert.equal(onArgv.stderr, warning);
  assert.match(onArgv.stdout, /at-rest\s+github/);
  const fromFile = await cli(['channel', 'list', '--token-file', tokenFile]);
  assert.equal(fromFile.stderr, '');
  assert.match(fromFile.stdout, /at-rest\s+github/);
  for (const [args, extra] of [
    [['--data-dir', dataDir], {}],
    [[], { POSTERN_ADMIN_TOKEN_FILE: tokenFile }],
    [[], { POSTERN_ADMIN_TOKEN: TOKEN }],
  ] as const) {
    const quiet = await cli(['channel', 'list', ...args], extra);
    assert.equal(quiet.stderr, '', JSON.stringify([args, extra]));
    assert.match(quiet.stdout, /at-rest\s+github/);
  }
  await assert.rejects(
    cli(['channel', 'list', '--token', 'wrong-token-000000']),
    (err: { stderr: string }) => {
      assert.ok(err.stderr.startsWith(warning), err.stderr);
      return true;
    },
  );
  await stop(relay);
});
