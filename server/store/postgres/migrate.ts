/**
 * Versioned schema migrations: plain SQL files in ./migrations (`NNN_name.sql`), applied in
 * order, each in its own transaction, recorded in `postern_schema`. Applied under an advisory
 * lock, so that relays starting together apply each one once; a database whose schema is newer
 * than this code is refused.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type pg from 'pg';
import { PosternError } from '../../../shared/errors.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Held while migrations are checked and applied (any 64-bit number unique to Postern). */
const MIGRATION_LOCK = 0x706f737465726e01n; // "postern" + 1

/** The migrations this code knows, oldest first. */
export function loadMigrations(dir: string = DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!m) continue;
    out.push({
      version: Number(m[1]),
      name: m[2]!,
      sql: readFileSync(path.join(dir, file), 'utf8'),
    });
  }
  out.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new PosternError(
        'ERR_CONFIG',
        `migrations: expected version ${i + 1}, found ${m.version}_${m.name}`,
      );
    }
  });
  return out;
}

/** The SQL that `migrate` would apply to an empty database (`migrate --print`). */
export function migrationSql(migrations: readonly Migration[] = loadMigrations()): string {
  const parts = [`-- Postern schema, version ${migrations.length}`, BOOTSTRAP];
  for (const m of migrations) {
    parts.push(
      `-- ${String(m.version).padStart(3, '0')}_${m.name}\nBEGIN;\n${m.sql.trim()}\n${record(m)}\nCOMMIT;`,
    );
  }
  return parts.join('\n\n') + '\n';
}

const BOOTSTRAP = `CREATE TABLE IF NOT EXISTS postern_schema (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);`;

function record(m: Migration): string {
  return `INSERT INTO postern_schema (version, name) VALUES (${m.version}, '${m.name}');`;
}

export interface MigrateResult {
  /** The schema version before. */
  from: number;
  /** The schema version now. */
  to: number;
  /** The migrations applied by this call (none when another relay had applied them). */
  applied: string[];
}

/**
 * Brings the database to the latest schema this code knows, without serving. Refuses
 * (ERR_CONFIG) a database whose schema is newer.
 */
export async function applyMigrations(
  pool: pg.Pool,
  migrations: readonly Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
    try {
      await client.query(BOOTSTRAP);
      const { rows } = await client.query<{ v: number | null }>(
        'SELECT max(version) AS v FROM postern_schema',
      );
      const from = rows[0]?.v ?? 0;
      const known = migrations.length;
      if (from > known) {
        throw new PosternError(
          'ERR_CONFIG',
          `the database schema is version ${from}, newer than this relay knows (version ${known}): upgrade the relay, or use a database written by this version`,
        );
      }
      const applied: string[] = [];
      for (const m of migrations.slice(from)) {
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query(record(m));
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        applied.push(`${String(m.version).padStart(3, '0')}_${m.name}`);
      }
      return { from, to: Math.max(from, known), applied };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
    }
  } catch (err) {
    broken = !(err instanceof PosternError);
    throw err;
  } finally {
    client.release(broken);
  }
}
