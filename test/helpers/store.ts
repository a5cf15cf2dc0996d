/**
 * The store the end-to-end, fault, attack and group suites run a relay on: POSTERN_TEST_STORE
 * is `embedded` (the default) or `postgres`. With `postgres`, each data dir a test starts a
 * relay on gets its own fresh database (made before the relay starts, kept while the data dir
 * lives, so a relay restarted on it finds its state) and loses it when the data dir is removed.
 * `test` names each test after the store in the PostgreSQL pass, so that a failure says where.
 */
import path from 'node:path';
import { test as nodeTest, type TestContext, type TestOptions } from 'node:test';
import { createDatabase, databaseUrl, dropDatabase, randomDatabaseName } from './postgres.ts';

export type TestStore = 'embedded' | 'postgres';

function parseStore(value: string | undefined): TestStore {
  if (value === undefined || value === '' || value === 'embedded') return 'embedded';
  if (value === 'postgres') return 'postgres';
  throw new Error(`POSTERN_TEST_STORE must be embedded or postgres, not ${JSON.stringify(value)}`);
}

export const TEST_STORE: TestStore = parseStore(process.env['POSTERN_TEST_STORE']);

// ---------------------------------------------------------------------------------------------
// Test names

export interface StoreTestOptions extends TestOptions {
  /**
   * The test is about the embedded store only (its files, its lock, its limits): it runs in
   * the embedded pass, and the PostgreSQL pass lists it as skipped with this reason.
   */
  embeddedOnly?: string;
  /** The test starts no relay (so no store): it runs in the embedded pass only. */
  noStore?: string;
  /** The test is about PostgreSQL (its server's faults): the embedded pass skips it. */
  postgresOnly?: string;
}

type TestFn = (t: TestContext) => void | Promise<void>;

/** `name`, with ` [postgres]` in the PostgreSQL pass. */
export function storeTestName(name: string): string {
  return TEST_STORE === 'embedded' ? name : `${name} [${TEST_STORE}]`;
}

/** node:test's `test`, named after the store; see StoreTestOptions for tests that run once. */
export function test(name: string, fn: TestFn): Promise<void>;
export function test(name: string, options: StoreTestOptions, fn: TestFn): Promise<void>;
export function test(
  name: string,
  optionsOrFn: StoreTestOptions | TestFn,
  maybeFn?: TestFn,
): Promise<void> {
  const { embeddedOnly, noStore, postgresOnly, ...options } =
    typeof optionsOrFn === 'function' ? {} : optionsOrFn;
  const fn = typeof optionsOrFn === 'function' ? optionsOrFn : maybeFn;
  if (fn === undefined) throw new Error(`test ${name} has no function`);
  const once =
    embeddedOnly !== undefined
      ? `embedded store only (${embeddedOnly}): runs in the embedded pass`
      : noStore !== undefined
        ? `no relay store involved (${noStore}): runs in the embedded pass`
        : undefined;
  if (TEST_STORE !== 'embedded' && once !== undefined) options.skip = once;
  if (TEST_STORE !== 'postgres' && postgresOnly !== undefined) {
    options.skip = `PostgreSQL only (${postgresOnly}): runs in the PostgreSQL pass`;
  }
  return nodeTest(storeTestName(name), options, fn);
}

// ---------------------------------------------------------------------------------------------
// Databases, one per data dir

/** Database name by absolute data dir. */
const databases = new Map<string, string>();
let exitCleanup = false;

/**
 * The arguments that put a relay on `dataDir` onto the test store: none for the embedded
 * store; `--database-url` for PostgreSQL, the data dir's own database, made on first use.
 */
export async function relayStoreArgs(dataDir: string): Promise<string[]> {
  if (TEST_STORE === 'embedded') return [];
  return ['--database-url', await databaseFor(dataDir)];
}

/** The URL of the data dir's database (PostgreSQL pass only); made on first use. */
export async function databaseFor(dataDir: string): Promise<string> {
  if (TEST_STORE !== 'postgres') throw new Error('no test database outside the PostgreSQL pass');
  const key = path.resolve(dataDir);
  const known = databases.get(key);
  if (known !== undefined) return databaseUrl(known);
  const name = randomDatabaseName('postern_e2e');
  databases.set(key, name);
  try {
    await createDatabase(name);
  } catch (err) {
    databases.delete(key);
    throw err;
  }
  if (!exitCleanup) {
    exitCleanup = true;
    // A test that never removes its data dir still leaves no database behind.
    process.once('beforeExit', () => void releaseDatabases('/'));
  }
  return databaseUrl(name);
}

/** Drops the databases of `dir` and of every data dir under it. */
export async function releaseDatabases(dir: string): Promise<void> {
  const root = path.resolve(dir);
  for (const [dataDir, name] of [...databases]) {
    if (dataDir !== root && !dataDir.startsWith(root === '/' ? '/' : `${root}${path.sep}`)) {
      continue;
    }
    databases.delete(dataDir);
    await dropDatabase(name);
  }
}
