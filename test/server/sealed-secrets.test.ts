/**
 * Channel secrets at rest, through the embedded store: encrypted in state.json with a key kept
 * elsewhere, plain in memory, converted from an earlier version's plaintext, and a wrong or
 * missing key refused with a message that says what to do.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import type { SecretsKeySource } from '../../server/store/secrets-key.ts';
import type { ChannelRecord } from '../../server/store/types.ts';
import { VERIFY_SECRET_FIELDS } from '../../server/verify/registry.ts';
import { ConfigError, PosternError } from '../../shared/errors.ts';

const GH = 'gh-secret-NEVER-ON-DISK';
const GH_OLD = 'gh-previous-NEVER-ON-DISK';
const META = 'meta-app-secret-NEVER-ON-DISK';
const META_TOKEN = 'meta-verify-token-NEVER-ON-DISK';
const ALL = [GH, GH_OLD, META, META_TOKEN];

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'postern-sealed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function recorder() {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    info: (fields: Record<string, unknown>, msg: string) =>
      lines.push({ level: 'info', fields, msg }),
    warn: (fields: Record<string, unknown>, msg: string) =>
      lines.push({ level: 'warn', fields, msg }),
  };
}

function channel(id: string, verify: ChannelRecord['verify']): ChannelRecord {
  return {
    id,
    name: id,
    verify,
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [5_000] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    methods: null,
    paths: null,
    maxBodyBytes: 1_024,
    createdAt: 1_700_000_000_000,
  };
}

const CHANNELS = [
  channel('ch_gh', { provider: 'github', secret: GH, previousSecret: GH_OLD }),
  channel('ch_meta', { provider: 'meta', secret: META, verifyToken: META_TOKEN }),
  channel('ch_open', null),
];

async function open(
  dataDir: string,
  opts: {
    secretsKey?: SecretsKeySource;
    forgetLostSecrets?: boolean;
    log?: ReturnType<typeof recorder>;
  } = {},
): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir, ...opts, logger: opts.log ?? recorder() });
  await store.open();
  return store;
}

async function withChannels(t: TestContext, opts: { secretsKey?: SecretsKeySource } = {}) {
  const dir = await tempDir(t);
  const store = await open(dir, opts);
  await store.updateControl((s) => {
    s.channels.push(...structuredClone(CHANNELS));
  });
  await store.close();
  return dir;
}

function keyRefused(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PosternError, String(err));
    assert.equal(err.code, 'ERR_SECRETS_KEY');
    assert.match(err.message, pattern);
    for (const secret of ALL) assert.equal(err.message.includes(secret), false);
    return true;
  };
}

test('one list of secret fields, used by the API view and by the encryption', () => {
  assert.deepEqual([...VERIFY_SECRET_FIELDS], ['secret', 'previousSecret', 'verifyToken']);
});

test('secrets are encrypted in state.json, plain in memory, and the same after reopen', async (t) => {
  const dir = await withChannels(t);
  const raw = await readFile(path.join(dir, 'state.json'));
  for (const secret of ALL) assert.equal(raw.includes(secret), false, `${secret} on disk`);
  const doc = JSON.parse(raw.toString('utf8')) as { channels: ChannelRecord[] };
  const onDisk = doc.channels.map((c) => c.verify as Record<string, unknown> | null);
  for (const v of [
    onDisk[0]!['secret'],
    onDisk[0]!['previousSecret'],
    onDisk[1]!['secret'],
    onDisk[1]!['verifyToken'],
  ]) {
    assert.match(String(v), /^enc:v1:[A-Za-z0-9+/]+=*$/);
  }
  assert.equal(onDisk[0]!['provider'], 'github', 'other fields stay readable');
  assert.equal(onDisk[2], null);
  const key = await readFile(path.join(dir, 'secrets.key'), 'utf8');
  assert.match(key, /^[A-Za-z0-9+/]{43}=\n$/);

  const store = await open(dir);
  t.after(() => store.close());
  assert.deepEqual((await store.readControl()).channels, CHANNELS);
});

test('an unchanged secret is written as it was: no new encryption on every write', async (t) => {
  const dir = await withChannels(t);
  const before = await readFile(path.join(dir, 'state.json'), 'utf8');
  const store = await open(dir);
  t.after(() => store.close());
  await store.updateControl((s) => {
    s.adminTokenHash = 'ab';
  });
  await store.updateControl((s) => {
    s.channels[0]!.verify = { provider: 'github', secret: 'rotated', previousSecret: GH };
  });
  const after = JSON.parse(await readFile(path.join(dir, 'state.json'), 'utf8')) as {
    channels: { verify: Record<string, string> | null }[];
  };
  const old = JSON.parse(before) as typeof after;
  assert.deepEqual(after.channels[1], old.channels[1], 'meta channel: same bytes');
  assert.notEqual(after.channels[0]!.verify!['secret'], old.channels[0]!.verify!['secret']);
  assert.equal((await store.readControl()).channels[0]!.verify!['secret' as never], 'rotated');
});

test('a ciphertext moved to another channel, or to another field, does not open', async (t) => {
  const dir = await withChannels(t);
  const file = path.join(dir, 'state.json');
  const pristine = await readFile(file, 'utf8');
  const doc = JSON.parse(pristine) as { channels: { verify: Record<string, string> }[] };
  doc.channels[1]!.verify['secret'] = doc.channels[0]!.verify['secret']!;
  await writeFile(file, JSON.stringify(doc));
  await assert.rejects(open(dir), keyRefused(/the secrets of channel ch_meta do not open/));

  const swapped = JSON.parse(pristine) as typeof doc;
  const v = swapped.channels[0]!.verify;
  [v['secret'], v['previousSecret']] = [v['previousSecret']!, v['secret']!];
  await writeFile(file, JSON.stringify(swapped));
  await assert.rejects(open(dir), keyRefused(/the secrets of channel ch_gh do not open/));
  await writeFile(file, pristine);
  const store = await open(dir);
  await store.close();
});

test('a state.json with plaintext secrets (an earlier version) is converted on open, with a warning', async (t) => {
  const dir = await tempDir(t);
  const legacy = {
    adminTokenHash: null,
    channels: CHANNELS,
    agents: [],
    pairings: [],
    usedTokenIds: [],
  };
  await writeFile(path.join(dir, 'state.json'), JSON.stringify(legacy, null, 2), { mode: 0o600 });
  const log = recorder();
  const store = await open(dir, { log });
  assert.deepEqual((await store.readControl()).channels, CHANNELS);
  await store.close();
  const warnings = log.lines.filter((l) => l.level === 'warn');
  assert.deepEqual(warnings, [
    { level: 'warn', fields: { count: 4 }, msg: 'encrypted 4 channel secrets at rest' },
  ]);
  const raw = await readFile(path.join(dir, 'state.json'));
  for (const secret of ALL) assert.equal(raw.includes(secret), false, `${secret} still on disk`);
  const again = recorder();
  const reopened = await open(dir, { log: again });
  t.after(() => reopened.close());
  assert.deepEqual((await reopened.readControl()).channels, CHANNELS);
  assert.deepEqual(
    again.lines.filter((l) => l.level === 'warn'),
    [],
    'converted once',
  );
});

test('a replaced key file: open refused, naming the key file and what to do; nothing changed', async (t) => {
  const dir = await withChannels(t);
  const stateBefore = await readFile(path.join(dir, 'state.json'), 'utf8');
  const keyFile = path.join(dir, 'secrets.key');
  const rightKey = await readFile(keyFile, 'utf8');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`);
  await assert.rejects(
    open(dir),
    keyRefused(
      new RegExp(
        `^${path.join(dir, 'state.json')}: the secrets of channel ch_gh do not open with the key from ${keyFile}, which is not the key they were encrypted with\\. Start with that key \\(restore it from its backup\\); if it is lost, start once with --forget-lost-secrets and set the secrets of the channels it names again$`,
      ),
    ),
  );
  assert.equal(await readFile(path.join(dir, 'state.json'), 'utf8'), stateBefore);
  await writeFile(keyFile, rightKey);
  const store = await open(dir); // the lock was released by the failed open
  t.after(() => store.close());
  assert.deepEqual((await store.readControl()).channels, CHANNELS);
});

test('a missing key file with encrypted secrets: refused, and no new key is made', async (t) => {
  const dir = await withChannels(t);
  await rm(path.join(dir, 'secrets.key'));
  await assert.rejects(
    open(dir),
    keyRefused(
      new RegExp(
        `^${path.join(dir, 'state.json')} holds encrypted channel secrets but ${path.join(dir, 'secrets.key')} is missing: restore it from its backup, or give the key they were encrypted with \\(POSTERN_SECRETS_KEY or --secrets-key-file\\); if it is lost, start once with --forget-lost-secrets$`,
      ),
    ),
  );
  assert.deepEqual((await readdir(dir)).sort(), ['events.mdb', 'events.mdb-lock', 'state.json']);
});

test('--forget-lost-secrets: those channels get secrets nobody knows, named in a warning', async (t) => {
  const dir = await withChannels(t);
  await rm(path.join(dir, 'secrets.key'));
  const log = recorder();
  const store = await open(dir, { forgetLostSecrets: true, log });
  t.after(() => store.close());
  assert.deepEqual(
    log.lines.filter((l) => l.level === 'warn'),
    [
      {
        level: 'warn',
        fields: { channelIds: ['ch_gh', 'ch_meta'] },
        msg: 'channel secrets lost with their key: these channels refuse every request until their verify secrets are set again',
      },
    ],
  );
  const [gh, meta, openChannel] = (await store.readControl()).channels;
  const ghVerify = gh!.verify as Record<string, string>;
  const metaVerify = meta!.verify as Record<string, string>;
  for (const value of [
    ghVerify['secret'],
    ghVerify['previousSecret'],
    metaVerify['secret'],
    metaVerify['verifyToken'],
  ]) {
    assert.match(value!, /^lost:[A-Za-z0-9_-]{43}$/);
  }
  assert.equal(ghVerify['provider'], 'github');
  assert.equal(openChannel!.verify, null);
  // Written again under the new key: a plain restart opens it.
  await store.close();
  const again = await open(dir);
  assert.deepEqual((await again.readControl()).channels[0]!.verify, gh!.verify);
  await again.close();
});

test('a key from POSTERN_SECRETS_KEY: no key file is written, and the data-dir key cannot open them', async (t) => {
  const key = randomBytes(32);
  const dir = await withChannels(t, { secretsKey: { kind: 'env', key } });
  assert.deepEqual((await readdir(dir)).sort(), ['events.mdb', 'events.mdb-lock', 'state.json']);
  await assert.rejects(
    open(dir),
    keyRefused(/is missing: restore it from its backup, or give the key they were encrypted with/),
  );
  await assert.rejects(
    open(dir, { secretsKey: { kind: 'env', key: randomBytes(32) } }),
    keyRefused(/do not open with the key from POSTERN_SECRETS_KEY, which is not the key/),
  );
  const store = await open(dir, { secretsKey: { kind: 'env', key } });
  t.after(() => store.close());
  assert.deepEqual((await store.readControl()).channels, CHANNELS);
});

test('a key file (--secrets-key-file): must exist, hold a key, and be closed to other users', async (t) => {
  const dir = await tempDir(t);
  const keyDir = await tempDir(t);
  const file = path.join(keyDir, 'relay.key');
  const source: SecretsKeySource = { kind: 'file', file };
  const where = `${file} \\(--secrets-key-file / POSTERN_SECRETS_KEY_FILE\\)`;
  const config = (pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
    return true;
  };
  await assert.rejects(
    open(dir, { secretsKey: source }),
    config(
      new RegExp(`^${where}: no such file; create it with: openssl rand -base64 32 > ${file}$`),
    ),
  );
  await writeFile(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o644 });
  await chmod(file, 0o644);
  await assert.rejects(
    open(dir, { secretsKey: source }),
    config(
      new RegExp(
        `^${where} is mode 0644: other users could read or replace the key; chmod 600 it \\(or 640 with a group that only the relay's user is in\\)$`,
      ),
    ),
  );
  await chmod(file, 0o660);
  await assert.rejects(open(dir, { secretsKey: source }), config(/is mode 0660/));
  await writeFile(file, 'not a key');
  await chmod(file, 0o600);
  await assert.rejects(
    open(dir, { secretsKey: source }),
    config(/expected the base64 of 32 random bytes/),
  );
  await writeFile(file, `${randomBytes(32).toString('base64')}\n`);
  await chmod(file, 0o640); // group-readable (root:postern 0640) is accepted
  const store = await open(dir, { secretsKey: source });
  await store.updateControl((s) => {
    s.channels.push(...structuredClone(CHANNELS));
  });
  await store.close();
  assert.deepEqual(
    (await readdir(dir)).sort(),
    ['events.mdb', 'events.mdb-lock', 'state.json'],
    'no key in the data dir',
  );
  const again = await open(dir, { secretsKey: source });
  t.after(() => again.close());
  assert.deepEqual((await again.readControl()).channels, CHANNELS);
});
