/**
 * `postern-relay serve`: parses the flags and environment, runs the relay until a signal. Loaded
 * only for `serve` (main.ts imports it on demand), so that admin commands start fast.
 */
import path from 'node:path';
import { parseFlags, shellQuote } from '../../shared/cli.ts';
import { ConfigError } from '../../shared/errors.ts';
import { createLogger } from '../../shared/logging.ts';
import { VERSION } from '../../shared/version.ts';
import { ADMIN_TOKEN_FILE } from '../admin-token.ts';
import { parseRelayConfig } from '../config.ts';
import { createRelay } from '../relay.ts';
import { redactUrl } from '../store/postgres/url.ts';

/** How long a shutdown may take past the grace period before the process exits anyway. */
const SHUTDOWN_EXTRA_MS = 15_000;

const SERVE_FLAGS = {
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
} as const;

export async function serve(args: string[], program: string, usage: string): Promise<void> {
  const parsed = parseFlags(args, SERVE_FLAGS, 'serve', `${program} serve --help`);
  if (parsed.help) {
    process.stdout.write(`Usage: ${program} serve [options]\n${usage}`);
    return;
  }
  if (parsed.positionals.length > 0) {
    throw new ConfigError(
      `serve: unexpected argument "${parsed.positionals[0]}" (${program} serve --help)`,
    );
  }
  const { values } = parsed;
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
    // Bounded whatever is under way: past the grace period and this much more (the store's
    // last writes), the process exits anyway rather than wait for ever.
    const deadlineMs = config.shutdownGraceMs + SHUTDOWN_EXTRA_MS;
    setTimeout(() => {
      logger.error({ deadlineMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, deadlineMs).unref();
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
  // The first admin command, as it works from this shell (the relay's own address, the token).
  const adminUrl = relay.url.replace(/\/\/(0\.0\.0\.0|\[::\])(?=:)/, '//localhost');
  const relayFlag = adminUrl === 'http://localhost:8080' ? '' : ` --relay ${adminUrl}`;
  const tryIt = (tokenFlag: string) => `Try: ${program} channel list${relayFlag}${tokenFlag}\n\n`;
  const banner =
    `\nPostern relay ${VERSION} on ${relay.url} (public URL ${relay.publicUrl})\n` + where;
  if (relay.adminTokenFile) {
    process.stderr.write(
      banner +
        `Admin token generated and written to ${relay.adminTokenFile} (mode 0600).\n` +
        tryIt(` --token-file ${shellQuote(relay.adminTokenFile)}`),
    );
  } else if (config.adminToken) {
    process.stderr.write(banner + 'Admin token: the value of POSTERN_ADMIN_TOKEN.\n' + tryIt(''));
  } else {
    const file = path.join(config.dataDir, ADMIN_TOKEN_FILE);
    process.stderr.write(
      banner +
        `Admin token: in ${file}, written on first start.\n` +
        tryIt(` --token-file ${shellQuote(file)}`),
    );
  }
}
