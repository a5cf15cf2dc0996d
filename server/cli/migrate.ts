/**
 * `postern-relay migrate`: brings a PostgreSQL database to the schema this relay knows, without
 * serving (under the same advisory lock as a relay's start), and says what it applied;
 * `--print` prints the SQL instead and connects to nothing.
 */
import { parseFlags } from '../../shared/cli.ts';
import { ConfigError, PosternError } from '../../shared/errors.ts';
import { parseDatabaseUrl } from '../config.ts';
import { applyMigrations, loadMigrations, migrationSql } from '../store/postgres/migrate.ts';
import { createPool, scrubError } from '../store/postgres/pool.ts';
import { redactUrl } from '../store/postgres/url.ts';
import { MIGRATE_USAGE } from './migrate-usage.ts';

export async function runMigrate(
  args: string[],
  env: NodeJS.ProcessEnv,
  out: (text: string) => void,
  program = 'postern-relay',
): Promise<void> {
  const help = `${program} migrate --help`;
  const parsed = parseFlags(
    args,
    { 'database-url': { type: 'string' }, print: { type: 'boolean' } } as const,
    'migrate',
    help,
  );
  if (parsed.help) return out(`Usage: ${program} migrate [options]\n${MIGRATE_USAGE}\n`);
  if (parsed.positionals.length > 0) {
    throw new ConfigError(`migrate: unexpected argument "${parsed.positionals[0]}" (${help})`);
  }
  const { values } = parsed;
  if (values.print) {
    out(migrationSql());
    return;
  }
  const raw = values['database-url'] ?? (env['POSTERN_DATABASE_URL'] || undefined);
  if (raw === undefined) {
    throw new ConfigError('migrate: give the database with --database-url or POSTERN_DATABASE_URL');
  }
  const url = parseDatabaseUrl('--database-url / POSTERN_DATABASE_URL', raw);
  const shown = redactUrl(url);
  const pool = createPool({ url, max: 1, applicationName: 'postern-migrate' });
  try {
    const result = await applyMigrations(pool, loadMigrations());
    out(
      result.applied.length === 0
        ? `${shown}: schema at version ${result.to}, nothing to apply\n`
        : `${shown}: schema version ${result.from} -> ${result.to}; applied ${result.applied.join(', ')}\n`,
    );
  } catch (err) {
    if (err instanceof PosternError) throw err;
    const clean = scrubError(err, url);
    throw new PosternError(
      'ERR_UNAVAILABLE',
      `migrate ${shown}: ${clean instanceof Error ? clean.message : String(clean)}`,
    );
  } finally {
    await pool.end().catch(() => undefined);
  }
}
