import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { parseRelayConfig } from '../../server/config.ts';
import { ConfigError } from '../../shared/errors.ts';

test('defaults: 0.0.0.0:8080, ./data, public URL from the port, 7 days of retention', () => {
  const c = parseRelayConfig({}, {});
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.port, 8080);
  assert.equal(c.dataDir, path.resolve('./data'));
  assert.equal(c.publicUrl, null);
  assert.equal(c.adminToken, null);
  assert.equal(c.heartbeatMs, 10_000);
  assert.equal(c.retentionMs, 7 * 24 * 3_600_000);
  assert.deepEqual(c.secretsKey, { kind: 'data-dir' });
  assert.equal(c.forgetLostSecrets, false);
  assert.equal(c.headerTimeoutMs, 10_000);
  assert.equal(c.maxConnectionsPerAddress, 256);
  assert.ok(Object.isFrozen(c));
});

test('the secrets key: POSTERN_SECRETS_KEY, or a key file from the flag (first) or the environment', () => {
  const key = randomBytes(32);
  assert.deepEqual(
    parseRelayConfig({}, { POSTERN_SECRETS_KEY: key.toString('base64') }).secretsKey,
    {
      kind: 'env',
      key,
    },
  );
  assert.deepEqual(parseRelayConfig({}, { POSTERN_SECRETS_KEY_FILE: 'k/env.key' }).secretsKey, {
    kind: 'file',
    file: path.resolve('k/env.key'),
  });
  assert.deepEqual(
    parseRelayConfig({ secretsKeyFile: '/etc/k' }, { POSTERN_SECRETS_KEY_FILE: 'k/env.key' })
      .secretsKey,
    { kind: 'file', file: '/etc/k' },
  );
  assert.equal(parseRelayConfig({ forgetLostSecrets: true }, {}).forgetLostSecrets, true);
});

test('connection bounds: from flags, else from the environment', () => {
  const env = { POSTERN_HEADER_TIMEOUT_MS: '2500', POSTERN_MAX_CONNECTIONS_PER_ADDRESS: '40' };
  const fromEnv = parseRelayConfig({}, env);
  assert.deepEqual([fromEnv.headerTimeoutMs, fromEnv.maxConnectionsPerAddress], [2_500, 40]);
  const fromFlags = parseRelayConfig(
    { headerTimeoutMs: '60000', maxConnectionsPerAddress: '1' },
    env,
  );
  assert.deepEqual([fromFlags.headerTimeoutMs, fromFlags.maxConnectionsPerAddress], [60_000, 1]);
});

test('flags override the environment', () => {
  const c = parseRelayConfig(
    { port: '9000', publicUrl: 'https://hooks.example.com/' },
    {
      POSTERN_PORT: '7000',
      POSTERN_PUBLIC_URL: 'https://other.example.com',
      POSTERN_RETENTION_HOURS: '0.5',
    },
  );
  assert.equal(c.port, 9000);
  assert.equal(c.publicUrl, 'https://hooks.example.com');
  assert.equal(c.retentionMs, 1_800_000);
});

for (const [what, flags, env, message] of [
  [
    'a port out of range',
    { port: '70000' },
    {},
    /--port \/ POSTERN_PORT: expected an integer from 0 to 65535, got "70000"/,
  ],
  [
    'a public URL with a path',
    { publicUrl: 'https://h.example.com/hooks' },
    {},
    /no path or query/,
  ],
  [
    'a public URL with a query',
    { publicUrl: 'https://h.example.com/?x=1' },
    {},
    /no path or query/,
  ],
  ['a non-http public URL', { publicUrl: 'ftp://h.example.com' }, {}, /expected an http\(s\) URL/],
  ['a log level', { logLevel: 'loud' }, {}, /--log-level: expected one of/],
  ['a heartbeat too short', { heartbeatMs: '10' }, {}, /--heartbeat-ms/],
  ['retention of zero', { retentionHours: '0' }, {}, /--retention-hours/],
  ['retention not a number', { retentionHours: 'week' }, {}, /--retention-hours/],
  [
    'a header timeout under 1 s',
    { headerTimeoutMs: '999' },
    {},
    /--header-timeout-ms \/ POSTERN_HEADER_TIMEOUT_MS: expected an integer from 1000 to 60000, got "999"/,
  ],
  [
    'a header timeout over 60 s',
    {},
    { POSTERN_HEADER_TIMEOUT_MS: '60001' },
    /--header-timeout-ms \/ POSTERN_HEADER_TIMEOUT_MS: expected an integer from 1000 to 60000/,
  ],
  [
    'no connection at all per address',
    { maxConnectionsPerAddress: '0' },
    {},
    /--max-connections-per-address \/ POSTERN_MAX_CONNECTIONS_PER_ADDRESS: expected an integer from 1 to 1000000, got "0"/,
  ],
  [
    'a connection cap that is not a number',
    {},
    { POSTERN_MAX_CONNECTIONS_PER_ADDRESS: 'lots' },
    /--max-connections-per-address/,
  ],
  [
    'a short admin token',
    {},
    { POSTERN_ADMIN_TOKEN: 'short' },
    /POSTERN_ADMIN_TOKEN: expected at least 16 characters/,
  ],
  [
    'a secrets key that is not 32 bytes of base64 (and the message does not repeat it)',
    {},
    { POSTERN_SECRETS_KEY: 'hunter2-hunter2-hunter2' },
    /^POSTERN_SECRETS_KEY: expected the base64 of 32 random bytes \(e\.g\. openssl rand -base64 32\)$/,
  ],
  [
    'a secrets key and a key file both',
    { secretsKeyFile: '/etc/k' },
    { POSTERN_SECRETS_KEY: Buffer.alloc(32).toString('base64') },
    /^POSTERN_SECRETS_KEY and a key file \(--secrets-key-file \/ POSTERN_SECRETS_KEY_FILE\) are both set: keep one$/,
  ],
] as const) {
  test(`refused: ${what}`, () => {
    assert.throws(
      () => parseRelayConfig(flags, env),
      (err: unknown) => err instanceof ConfigError && message.test(err.message),
    );
  });
}

test('the store: embedded by default; PostgreSQL with --database-url (first) or POSTERN_DATABASE_URL', () => {
  const c = parseRelayConfig({}, {});
  assert.equal(c.databaseUrl, null);
  assert.equal(c.databasePoolSize, 10);
  const env = {
    POSTERN_DATABASE_URL: 'postgres://env@127.0.0.1/e',
    POSTERN_DATABASE_POOL_SIZE: '4',
  };
  assert.equal(parseRelayConfig({}, env).databaseUrl, 'postgres://env@127.0.0.1/e');
  assert.equal(parseRelayConfig({}, env).databasePoolSize, 4);
  const flags = {
    databaseUrl: 'postgresql://flag@db:5433/f?sslmode=require',
    databasePoolSize: '2',
  };
  assert.equal(parseRelayConfig(flags, env).databaseUrl, flags.databaseUrl);
  assert.equal(parseRelayConfig(flags, env).databasePoolSize, 2);
  // An empty variable is no URL (as with the other POSTERN_ variables that take secrets).
  assert.equal(parseRelayConfig({}, { POSTERN_DATABASE_URL: '' }).databaseUrl, null);
});

test('a bad database URL or pool size is refused, and the message never repeats the password', () => {
  for (const raw of [
    'mysql://u:pa55word-xyz@db/x',
    'postgres://u:pa55word-xyz@/x',
    'u:pa55word-xyz@db/x',
    'http://u:pa55word-xyz@db/x',
  ]) {
    assert.throws(
      () => parseRelayConfig({ databaseUrl: raw }, {}),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /--database-url/);
        assert.doesNotMatch(err.message, /pa55word-xyz/);
        return true;
      },
    );
  }
  for (const n of ['0', '-1', '1.5', 'ten', '1001']) {
    assert.throws(() => parseRelayConfig({ databasePoolSize: n }, {}), /--database-pool-size/);
  }
});
