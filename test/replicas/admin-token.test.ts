/**
 * Relays on one database started together without POSTERN_ADMIN_TOKEN: the first to store a
 * generated token wins; every relay accepts that one, and only its relay keeps a token file.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createDatabase, dropDatabase, randomDatabaseName } from '../helpers/postgres.ts';
import { removeDir, spawnRelay, tempDir, type Proc } from '../helpers/processes.ts';

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

test('three relays started at once share one generated admin token', async (t) => {
  const name = randomDatabaseName('postern_replicas');
  const url = await createDatabase(name);
  t.after(() => dropDatabase(name));
  const env = { POSTERN_SECRETS_KEY: randomBytes(32).toString('base64') };
  const dirs = await Promise.all([1, 2, 3].map(() => tempDir('postern-replica-')));
  const procs: Proc[] = await Promise.all(
    dirs.map((d) => spawnRelay(d, { env, databaseUrl: url })),
  );
  t.after(async () => {
    for (const p of procs) await p.kill();
    for (const d of dirs) await removeDir(d);
  });
  const urls = await Promise.all(
    procs.map(async (p) => String((await p.waitForMsg('relay listening'))['url'])),
  );
  const files = dirs.map((d) => path.join(d, 'admin-token'));
  const kept = [];
  for (const f of files) if (await exists(f)) kept.push(f);
  assert.equal(kept.length, 1, 'one relay keeps the token it generated');
  const token = (await readFile(kept[0]!, 'utf8')).trim();
  for (const u of urls) {
    const ok = await fetch(`${u}/api/channels`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200, `${u} accepts the stored token`);
    await ok.arrayBuffer();
  }
});
