/**
 * Where the admin CLI takes its token from: a file or the environment; `--token` on the command
 * line (readable by every local user in /proc/<pid>/cmdline) still works, with a warning.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { resolveChannelSecret, resolveToken } from '../../server/cli/admin.ts';
import { ConfigError } from '../../shared/errors.ts';

const WARNING =
  'postern-relay: warning: --token is visible to other local users in the process list; use --token-file FILE or POSTERN_ADMIN_TOKEN instead\n';

async function files(t: TestContext) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'postern-cli-token-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, 'pat_from_file\n', { mode: 0o600 });
  await writeFile(path.join(dir, 'empty'), '\n');
  return { dir, tokenFile };
}

function resolve(values: Parameters<typeof resolveToken>[0], env: NodeJS.ProcessEnv = {}) {
  const warnings: string[] = [];
  const token = resolveToken(values, env, (line) => warnings.push(line));
  return { token, warnings };
}

function refused(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
    return true;
  };
}

test('--token-file, then --token (with a warning), then POSTERN_ADMIN_TOKEN_FILE, then POSTERN_ADMIN_TOKEN', async (t) => {
  const { tokenFile } = await files(t);
  const env = { POSTERN_ADMIN_TOKEN: 'pat_from_env' };
  assert.deepEqual(resolve({ 'token-file': tokenFile }, env), {
    token: 'pat_from_file',
    warnings: [],
  });
  assert.deepEqual(resolve({ token: 'pat_on_argv' }, env), {
    token: 'pat_on_argv',
    warnings: [WARNING],
  });
  assert.deepEqual(resolve({}, { POSTERN_ADMIN_TOKEN_FILE: tokenFile }), {
    token: 'pat_from_file',
    warnings: [],
  });
  assert.deepEqual(resolve({}, env), { token: 'pat_from_env', warnings: [] });
});

test('the default is <data-dir>/admin-token, from --data-dir or POSTERN_DATA_DIR', async (t) => {
  const { dir } = await files(t);
  await writeFile(path.join(dir, 'admin-token'), 'pat_generated\n');
  assert.equal(resolve({ 'data-dir': dir }).token, 'pat_generated');
  assert.equal(resolve({}, { POSTERN_DATA_DIR: dir }).token, 'pat_generated');
  assert.throws(
    () => resolve({ 'data-dir': path.join(dir, 'nowhere') }),
    refused(
      new RegExp(
        `^no admin token: pass --token-file FILE, set POSTERN_ADMIN_TOKEN_FILE or POSTERN_ADMIN_TOKEN, or point --data-dir at the relay's data dir \\(cannot read the admin token from ${path.join(dir, 'nowhere', 'admin-token')} \\(the default, <data-dir>/admin-token\\): ENOENT\\)$`,
      ),
    ),
  );
});

test('refused: two sources at one level, a missing or empty file, an empty --token', async (t) => {
  const { dir, tokenFile } = await files(t);
  assert.throws(
    () => resolve({ token: 'a', 'token-file': tokenFile }),
    refused(/^--token and --token-file are both given: keep --token-file$/),
  );
  assert.throws(
    () => resolve({}, { POSTERN_ADMIN_TOKEN_FILE: tokenFile, POSTERN_ADMIN_TOKEN: 'x' }),
    refused(/^POSTERN_ADMIN_TOKEN_FILE and POSTERN_ADMIN_TOKEN are both set: keep one$/),
  );
  const missing = path.join(dir, 'missing');
  assert.throws(
    () => resolve({ 'token-file': missing }),
    refused(new RegExp(`^cannot read the admin token from ${missing} \\(--token-file\\): ENOENT$`)),
  );
  const empty = path.join(dir, 'empty');
  assert.throws(
    () => resolve({}, { POSTERN_ADMIN_TOKEN_FILE: empty }),
    refused(
      new RegExp(`^${empty} \\(POSTERN_ADMIN_TOKEN_FILE\\) is empty: expected the admin token$`),
    ),
  );
  assert.throws(() => resolve({ token: '' }), refused(/^--token is empty$/));
});

test("a channel's secret: --secret-file without a warning, --secret with one, not both", async (t) => {
  const { dir, tokenFile } = await files(t);
  const warnings: string[] = [];
  const warn = (line: string) => warnings.push(line);
  assert.equal(resolveChannelSecret({ 'secret-file': tokenFile }, warn), 'pat_from_file');
  assert.equal(resolveChannelSecret({}, warn), undefined);
  assert.deepEqual(warnings, []);
  assert.equal(resolveChannelSecret({ secret: 'on-the-line' }, warn), 'on-the-line');
  assert.deepEqual(warnings, [
    'postern-relay: warning: --secret is visible to other local users in the process list; use --secret-file FILE instead\n',
  ]);
  assert.throws(
    () => resolveChannelSecret({ secret: 'a', 'secret-file': tokenFile }, warn),
    refused(/--secret and --secret-file are both given/),
  );
  assert.throws(
    () => resolveChannelSecret({ 'secret-file': path.join(dir, 'empty') }, warn),
    refused(/is empty: expected the provider's secret/),
  );
  assert.throws(
    () => resolveChannelSecret({ 'secret-file': path.join(dir, 'missing') }, warn),
    refused(/cannot read the provider's secret from .*missing \(--secret-file\): ENOENT/),
  );
});
