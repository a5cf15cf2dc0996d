/**
 * The relay binary: `serve` runs the relay; every other subcommand talks to a running relay's
 * admin API (see `cli/admin.ts`). The only module that reads argv and the environment.
 */
import { invokedAs, unknownCommand } from '../shared/cli.ts';
import { ConfigError, isPosternError } from '../shared/errors.ts';
import { VERSION } from '../shared/version.ts';
import { ADMIN_GROUPS, ADMIN_USAGE, runAdminCommand } from './cli/admin.ts';
import { MIGRATE_USAGE } from './cli/migrate-usage.ts';

const SERVE_USAGE = `  serve                 run the relay
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
`;

const usage = (program: string) => `Usage: ${program} <command> [options]

${SERVE_USAGE}
${MIGRATE_USAGE}

${ADMIN_USAGE}
  --version             print the version
`;

async function main(argv: string[]): Promise<void> {
  const program = {
    relay: invokedAs('relay', process.env, process.argv[1]),
    agent: invokedAs('relay', process.env, process.argv[1], 'agent'),
  };
  const [command, ...rest] = argv;
  if (command !== 'serve') {
    // `events list | head`: a reader that goes away ends the command quietly, as with other
    // Unix tools (not the relay itself, whose log is stdout: it keeps failing loudly).
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage(program.relay));
    return;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command === 'serve') {
    const { serve } = await import('./cli/serve.ts');
    return serve(rest, program.relay, SERVE_USAGE);
  }
  if (command === 'migrate') {
    const { runMigrate } = await import('./cli/migrate.ts');
    return runMigrate(rest, process.env, (text) => process.stdout.write(text), program.relay);
  }
  if (!ADMIN_GROUPS.includes(command)) {
    unknownCommand(program.relay, command, ['serve', 'migrate', ...ADMIN_GROUPS, '--version']);
  }
  return runAdminCommand(command, rest, process.env, program);
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
