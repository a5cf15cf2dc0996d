/**
 * Everything under the data dir is owner-only, whatever the umask; what an earlier version or
 * an operator left open is tightened on open, with a warning naming the path and its old mode.
 */
import assert from 'node:assert/strict';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EmbeddedStore } from '../../server/store/embedded.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'postern-modes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function recorder() {
  const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
  return {
    warnings,
    info() {},
    warn: (fields: Record<string, unknown>, msg: string) => warnings.push({ fields, msg }),
  };
}

/** Every entry below `dir` (and `dir` itself) with its permission bits. */
async function modes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (p: string, rel: string) => {
    const s = await lstat(p);
    out[rel] = (s.mode & 0o777).toString(8);
    if (s.isDirectory()) {
      for (const name of await readdir(p)) await walk(path.join(p, name), path.join(rel, name));
    }
  };
  await walk(dir, '.');
  return out;
}

function withUmask(t: TestContext, mask: number): void {
  const before = process.umask(mask);
  t.after(() => void process.umask(before));
}

test('with umask 000, a new data dir and all it holds are 0700 / 0600', async (t) => {
  withUmask(t, 0);
  const parent = await tempDir(t);
  const dir = path.join(parent, 'nested', 'data');
  const log = recorder();
  const store = new EmbeddedStore({ dataDir: dir, logger: log });
  await store.open();
  await store.updateControl((s) => {
    s.adminTokenHash = 'x';
  });
  for (let i = 0; i < 3; i++) {
    await store.appendEvent({
      id: `evt_${i}`,
      channelId: 'ch_a',
      receivedAt: 1,
      method: 'POST',
      path: '',
      query: '',
      headers: [],
      originalUrl: 'http://x/h/ch_a',
      remoteAddress: '127.0.0.1',
      body: Buffer.alloc(3000),
    });
  }
  const all = await modes(dir);
  assert.deepEqual(all, {
    '.': '700',
    'events.mdb': '600',
    'events.mdb-lock': '600',
    'relay.lock': '600',
    'secrets.key': '600',
    'state.json': '600',
  });
  await store.close();
  assert.equal((await stat(path.join(parent, 'nested'))).mode & 0o077, 0, 'a parent it made too');
  assert.deepEqual(log.warnings, []);
});

test('an existing data dir left open (0755 / 0644 / 0777) is tightened, one warning per path', async (t) => {
  const parent = await tempDir(t);
  const dir = path.join(parent, 'data');
  const first = new EmbeddedStore({ dataDir: dir, logger: recorder() });
  await first.open();
  await first.updateControl((s) => {
    s.adminTokenHash = 'x';
  });
  await first.close();
  await writeFile(path.join(dir, 'admin-token'), 'pat_x\n');
  await writeFile(path.join(dir, '.state.json.tmp'), '{}');
  const outside = path.join(parent, 'outside.txt');
  await writeFile(outside, "not the relay's");
  await chmod(outside, 0o644);
  await symlink(outside, path.join(dir, 'link'));
  await mkdir(path.join(dir, 'extra', 'deeper'), { recursive: true });
  const loose: [string, number][] = [
    ['.', 0o755],
    ['events.mdb', 0o644],
    ['state.json', 0o644],
    ['admin-token', 0o640],
    ['secrets.key', 0o604],
    ['.state.json.tmp', 0o666],
    ['extra', 0o750],
    ['extra/deeper', 0o711],
  ];
  for (const [rel, mode] of loose) await chmod(path.join(dir, rel), mode);

  const log = recorder();
  const store = new EmbeddedStore({ dataDir: dir, logger: log });
  await store.open();
  t.after(() => store.close());
  const after = await modes(dir);
  delete after['link'];
  assert.deepEqual(after, {
    '.': '700',
    '.state.json.tmp': '600',
    'admin-token': '600',
    extra: '700',
    'extra/deeper': '700',
    'events.mdb': '600',
    'events.mdb-lock': '600',
    'relay.lock': '600',
    'secrets.key': '600',
    'state.json': '600',
  });
  assert.equal((await stat(outside)).mode & 0o777, 0o644, 'a symlink is not followed');
  const DIRS = ['.', 'extra', 'extra/deeper'];
  const msg = 'tightened the permissions of a data-dir entry that other users could reach';
  const seen = log.warnings.map((w) => {
    assert.equal(w.msg, msg);
    return `${path.relative(dir, String(w.fields['path'])) || '.'} ${String(w.fields['mode'])} -> ${String(w.fields['now'])}`;
  });
  assert.deepEqual(
    seen.sort(),
    loose
      .map(
        ([rel, mode]) => `${rel} 0${mode.toString(8)} -> ${DIRS.includes(rel) ? '0700' : '0600'}`,
      )
      .sort(),
  );
  assert.equal(log.warnings.length, loose.length);
});
