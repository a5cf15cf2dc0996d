/**
 * The agent's private key on disk: owner-only whatever the umask, and never written into a file
 * that someone else could already have open.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { KEY_FILE, loadIdentity, newKeyPair, saveIdentity } from '../../agent/identity.ts';

test('with umask 000, pairing writes a 0700 state dir and 0600 files; a stale temp file is replaced', async (t) => {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'postern-identity-'));
  t.after(() => rm(parent, { recursive: true, force: true }));
  const before = process.umask(0);
  t.after(() => void process.umask(before));
  const stateDir = path.join(parent, 'state');
  const identity = {
    agentId: 'ag_1',
    name: 'a',
    relayUrl: 'http://127.0.0.1:1',
    audience: 'http://127.0.0.1:1',
    privateKey: newKeyPair().privateKey,
  };
  await saveIdentity(stateDir, identity);
  // A crash once left a world-readable temp file, which someone holds open.
  const stale = path.join(stateDir, `${KEY_FILE}.tmp`);
  await writeFile(stale, '');
  await chmod(stale, 0o666);
  const spy = await open(stale, 'r');
  t.after(() => spy.close());
  await saveIdentity(stateDir, identity);
  assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
  assert.deepEqual((await readdir(stateDir)).sort(), ['agent.key', 'identity.json']);
  for (const name of ['agent.key', 'identity.json']) {
    assert.equal((await stat(path.join(stateDir, name))).mode & 0o777, 0o600, name);
  }
  assert.equal((await spy.readFile()).length, 0, 'the open stale file never got the key');
  const loaded = await loadIdentity(stateDir);
  assert.equal(loaded.agentId, 'ag_1');
});
