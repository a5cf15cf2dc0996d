/**
 * The relay binary: `serve` runs the relay; every other subcommand talks to a running relay's
 * admin API (see `cli/admin.ts`). The only module that reads argv and the environment.
 */
import { parseArgs } from 'node:util';
import { ConfigError, isPosternError } from '../shared/errors.ts';
import { createLogger } from '../shared/logging.ts';
import { VERSION } from '../shared/version.ts';
import { runAdminCommand, ADMIN_USAGE } from './cli/admin.ts';
import { MIGRATE_USAGE, runMigrate } from './cli/migrate.ts';
import { parseRelayConfig } from './config.ts';
import { createRelay } from './relay.ts';
import { redactUrl } from './store/postgres/url.ts';

const USAGE = `Usage: postern-relay <command> [options]

  serve                 run the relay
    --host HOST           address to listen on       (POSTERN_HOST, default 0.0.0.0)
    --port PORT           port to listen on          (POSTERN_PORT, default 8080)
    --data-dir DIR        where state is kept        (POSTERN_DATA_DIR, default ./data)
    --database-url URL    keep events and channels in PostgreSQL instead of the data dir
                          (POSTERN_DATABASE_URL), e.g.
                          postgres://postern@db.internal:5432/postern?sslmode=verify-full
                          A password belongs in the environment variable, not in
                          a flag others can see. Migrations are applied at start; while the
                          database cannot be reached the relay waits and tries again
    --database-pool-size N
                          PostgreSQL connections at most (POSTERN_DATABASE_POOL_SIZE, default 10;
                          the change feed holds one more)
    --public-url URL      URL providers and agents use (POSTERN_PUBLIC_URL,
                          default http://localhost:<port>)
    --heartbeat-ms MS     tunnel heartbeat interval  (POSTERN_HEARTBEAT_MS, default 10000)
    --lease-ms MS         how long a claim on an event holds unrenewed: with several relays, how
                          soon another delivers what a dead relay had claimed (POSTERN_LEASE_MS,
                          default 30000)
    --retention-hours H   keep delivered/failed events this long (POSTERN_RETENTION_HOURS,
                          default 168 = 7 days; decimals allowed)
    --trust-proxy         behind a reverse proxy: rate limits use the client address from
                          X-Forwarded-For (POSTERN_TRUST_PROXY=1)
    --header-timeout-ms MS
                          a connection that has not sent a complete request head this long
                          after connecting is closed (POSTERN_HEADER_TIMEOUT_MS, default 10000)
    --max-connections-per-address N
                          open connections one client address may hold (IPv6: per /64);
                          behind --trust-proxy, requests in flight per forwarded address
                          (POSTERN_MAX_CONNECTIONS_PER_ADDRESS, default 256)
    --log-level LEVEL     fatal|error|warn|info|debug|trace|silent (POSTERN_LOG_LEVEL, default info)
    --secrets-key-file F  key that encrypts channel secrets at rest (POSTERN_SECRETS_KEY_FILE,
                          or the key itself in POSTERN_SECRETS_KEY; default <data-dir>/secrets.key,
                          generated on first start: back it up apart from the data dir)
    --forget-lost-secrets the secrets key is lost: start anyway; channels whose secrets it cannot
                          open refuse every request until their secrets are set again
    The admin token comes from POSTERN_ADMIN_TOKEN, or is generated on first start and
    written to <data-dir>/admin-token. One relay per data dir: <data-dir>/relay.lock.

${MIGRATE_USAGE}

${ADMIN_USAGE}
  --version             print the version
`;

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
      'database-pool-size': { type: 'string' },
      'public-url': { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'lease-ms': { type: 'string' },
      'retention-hours': { type: 'string' },
      'trust-proxy': { type: 'boolean' },
      'header-timeout-ms': { type: 'string' },
      'max-connections-per-address': { type: 'string' },
      'log-level': { type: 'string' },
      'secrets-key-file': { type: 'string' },
      'forget-lost-secrets': { type: 'boolean' },
    },
    strict: true,
  });
  const config = parseRelayConfig(
    {
      host: values.host,
      port: values.port,
      dataDir: values['data-dir'],
      databaseUrl: values['database-url'],
      databasePoolSize: values['database-pool-size'],
      publicUrl: values['public-url'],
      heartbeatMs: values['heartbeat-ms'],
      leaseMs: values['lease-ms'],
      retentionHours: values['retention-hours'],
      trustProxy: values['trust-proxy'],
      headerTimeoutMs: values['header-timeout-ms'],
      maxConnectionsPerAddress: values['max-connections-per-address'],
      logLevel: values['log-level'],
      secretsKeyFile: values['secrets-key-file'],
      forgetLostSecrets: values['forget-lost-secrets'],
    },
    process.env,
  );
  const logger = createLogger('postern-relay', config.logLevel);
  const relay = createRelay(config, { logger });
  // Set before start: a relay waiting for its database stops on a signal too.
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'signal received');
    relay.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    await relay.start();
  } catch (err) {
    if (stopping) return; // stopped while waiting for the store: shutdown exits
    throw err;
  }
  const where =
    config.databaseUrl === null
      ? `Data dir: ${config.dataDir}\n`
      : `Store: PostgreSQL at ${redactUrl(config.databaseUrl)} (data dir ${config.dataDir})\n`;
  if (relay.adminTokenFile) {
    process.stderr.write(
      `\nPostern relay ${VERSION} on ${relay.url} (public URL ${relay.publicUrl})\n` +
        where +
        `Admin token generated and written to ${relay.adminTokenFile} (mode 0600).\n` +
        `Admin commands take it with: --token-file ${relay.adminTokenFile}\n\n`,
    );
  } else {
    process.stderr.write(
      `\nPostern relay ${VERSION} on ${relay.url} (public URL ${relay.publicUrl})\n` +
        where +
        (config.adminToken
          ? 'Admin token: the value of POSTERN_ADMIN_TOKEN.\n\n'
          : `Admin token: in ${config.dataDir}/admin-token, written on first start.\n\n`),
    );
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command === 'serve') return serve(rest);
  if (command === 'migrate') {
    return runMigrate(rest, process.env, (text) => process.stdout.write(text));
  }
  return runAdminCommand(command, rest, process.env);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (
    err instanceof ConfigError ||
    isPosternError(err) ||
    (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
  ) {
    process.stderr.write(`postern-relay: ${(err as Error).message}\n`);
  } else {
    process.stderr.write(`postern-relay: ${(err as Error).stack ?? String(err)}\n`);
  }
  process.exitCode = 1;
});
