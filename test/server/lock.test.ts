/**
 * The data-dir lock: one holder at a time, a clear refusal naming the holder, and a lock whose
 * holder is gone (dead, pid reused, before a reboot) taken over at once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  DataDirLock,
  LOCK_FILE,
  processStartTime,
  startTimeFromStat,
  type LockHolder,
} from '../../server/store/lock.ts';
import { PosternError } from '../../shared/errors.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'postern-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function recorder() {
  const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
  return {
    warnings,
    warn: (fields: Record<string, unknown>, msg: string) => warnings.push({ fields, msg }),
  };
}

async function readHolder(dir: string): Promise<LockHolder> {
  return JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8')) as LockHolder;
}

async function writeHolder(dir: string, holder: Partial<LockHolder>): Promise<void> {
  const full: LockHolder = {
    pid: process.pid,
    hostname: os.hostname(),
    startedAt: '2025-01-01T00:00:00.000Z',
    processStart: await processStartTime(process.pid),
    bootId: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(),
    nonce: 'test',
    ...holder,
  };
  await writeFile(path.join(dir, LOCK_FILE), JSON.stringify(full), { mode: 0o600 });
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

function isLocked(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PosternError, String(err));
    assert.equal(err.code, 'ERR_DATA_DIR_LOCKED');
    assert.match(err.message, pattern);
    return true;
  };
}

test('startTimeFromStat reads field 22, whatever the command name holds', () => {
  const tail = 'S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21';
  assert.equal(startTimeFromStat(`42 (node) ${tail}`), '987654');
  assert.equal(startTimeFromStat(`42 (a) b (c) d) ${tail}`), '987654');
  assert.equal(startTimeFromStat('42 (node) S 1 2'), null);
  assert.equal(startTimeFromStat('garbage'), null);
  const own = processStartTime(process.pid);
  return own.then((v) => assert.match(v ?? '', /^\d+$/));
});

test('acquire writes a 0600 lock naming this process; a second acquire is refused; release frees it', async (t) => {
  const dir = await tempDir(t);
  const log = recorder();
  const lock = await DataDirLock.acquire(dir, log, () => Date.parse('2025-02-03T04:05:06.000Z'));
  const holder = await readHolder(dir);
  assert.equal(holder.pid, process.pid);
  assert.equal(holder.hostname, os.hostname());
  assert.equal(holder.startedAt, '2025-02-03T04:05:06.000Z');
  assert.equal(holder.processStart, await processStartTime(process.pid));
  assert.equal((await stat(path.join(dir, LOCK_FILE))).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), [LOCK_FILE], 'no temp file left');

  await assert.rejects(
    DataDirLock.acquire(dir, log),
    isLocked(
      new RegExp(
        `^${dir} is in use by another relay \\(pid ${process.pid} on host ${os.hostname()}, started 2025-02-03T04:05:06.000Z\\); one relay per data dir: stop it first$`,
      ),
    ),
  );
  assert.deepEqual(await readdir(dir), [LOCK_FILE], 'the refused attempt left nothing');
  await lock.release();
  assert.deepEqual(await readdir(dir), []);
  await lock.release(); // twice is harmless
  const again = await DataDirLock.acquire(dir, log);
  await again.release();
  assert.deepEqual(log.warnings, []);
});

for (const [what, holder] of [
  ['whose process is dead', async () => ({ pid: await deadPid() })],
  [
    'whose pid now belongs to another process (start time differs)',
    async () => ({ processStart: '1' }),
  ],
  ['written before a reboot (boot id differs)', async () => ({ bootId: 'an-earlier-boot' })],
] as const) {
  test(`a lock ${what} is taken over at once, with a warning`, async (t) => {
    const dir = await tempDir(t);
    await writeHolder(dir, await holder());
    const log = recorder();
    const lock = await DataDirLock.acquire(dir, log);
    t.after(() => lock.release());
    const now = await readHolder(dir);
    assert.equal(now.pid, process.pid);
    assert.notEqual(now.nonce, 'test');
    assert.deepEqual(
      log.warnings.map((w) => w.msg),
      ['took over the data-dir lock of a relay that is gone'],
    );
    assert.deepEqual((await readdir(dir)).sort(), [LOCK_FILE], 'no claim or temp file left');
  });
}

test('a lock file that is not a lock (garbage) is taken over', async (t) => {
  const dir = await tempDir(t);
  await writeFile(path.join(dir, LOCK_FILE), 'not json');
  const lock = await DataDirLock.acquire(dir, recorder());
  t.after(() => lock.release());
  assert.equal((await readHolder(dir)).pid, process.pid);
});

test('a lock held on another host is refused: its holder cannot be checked from here', async (t) => {
  const dir = await tempDir(t);
  await writeHolder(dir, { hostname: 'other-host', pid: 4242 });
  await assert.rejects(
    DataDirLock.acquire(dir, recorder()),
    isLocked(
      new RegExp(
        `^${dir} is locked by a relay on another host \\(pid 4242 on host other-host, started 2025-01-01T00:00:00.000Z\\), which cannot be checked from here; if it no longer runs, delete ${path.join(dir, LOCK_FILE)} and start again$`,
      ),
    ),
  );
  assert.equal((await readHolder(dir)).hostname, 'other-host', 'left as it was');
});

test('concurrent acquires: exactly one wins, on a free dir and over a stale lock, 20 rounds each', async (t) => {
  const dir = await tempDir(t);
  const dead = await deadPid();
  for (const stale of [false, true]) {
    for (let round = 0; round < 20; round++) {
      if (stale) await writeHolder(dir, { pid: dead, nonce: `stale-${round}` });
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, () => DataDirLock.acquire(dir, recorder())),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1, `stale=${stale} round ${round}: ${won.length} winners`);
      assert.equal(lost.length, 5);
      for (const r of lost) isLocked(/is in use by another relay/)(r.reason);
      await (won[0] as PromiseFulfilledResult<DataDirLock>).value.release();
      assert.deepEqual(await readdir(dir), [], `stale=${stale} round ${round}: files left`);
    }
  }
});

test('release leaves a lock that is no longer this one', async (t) => {
  const dir = await tempDir(t);
  const log = recorder();
  const lock = await DataDirLock.acquire(dir, log);
  await writeHolder(dir, { nonce: 'someone-else' });
  await lock.release();
  assert.equal((await readHolder(dir)).nonce, 'someone-else');
  assert.deepEqual(
    log.warnings.map((w) => w.msg),
    ['the data-dir lock was replaced while this relay ran'],
  );
});
