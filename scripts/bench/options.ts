/**
 * The benchmark's flags, parsed once into a frozen object with defaults and clear errors.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LOCAL_SERVER_URL } from '../scratch-database.ts';
import { ROOT } from './children.ts';

export const STORES = ['embedded', 'postgres'] as const;
export type StoreName = (typeof STORES)[number];
export type StoreChoice = StoreName | 'both';

export const SCENARIOS = ['direct', 'async', 'sync', 'backlog', 'scale'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/** What `npm run bench` runs without --scenarios: everything but the long scale scenario. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = ['direct', 'async', 'sync', 'backlog'];

export const USAGE = `Usage: npm run bench -- [options]

  --scenarios LIST  comma-separated, from direct, async, sync, backlog, scale
                    (default direct,async,sync,backlog; async includes the CPU figures)
  --store S         the relay's store: embedded, postgres, or both (each scenario but
                    direct runs on each store, printed side by side; then async rounds
                    of half --duration in turns, E P P E E P, which PostgreSQL's rate
                    targets are judged on)                        (default embedded)
  --database-url U  the PostgreSQL server: each relay gets a fresh database on it, dropped
                    after       (default POSTERN_TEST_DATABASE_URL, else
                    postgres://postgres@127.0.0.1:5432/postgres)
  --duration S      seconds of load in each timed scenario        (default 10;    --quick 2)
  --connections N   concurrent connections                        (default 64;    --quick 16)
  --body-bytes N    size of the JSON webhook body                 (default 1024)
  --backlog N       webhooks queued while the agent is away       (default 50000; --quick 2000)
  --scale N         webhooks queued in the scale scenario         (default 1000000; --quick 2000)
  --replicas N      relays on one PostgreSQL database behind a load balancer: the
                    delivered rate and statements per delivered event with 1 and N
                    relays, and kill -9 of one under load (the failover time); alone,
                    unless --scenarios is given too
  --timeout S       stop everything and fail after S seconds      (default 600;   --quick 120;
                    with scale, plus 1 s per 500 of --scale; twice that with both stores)
  --out FILE        where to write the results                    (default bench-results.json)
  --quick           a smoke run with the small values above
`;

export interface BenchOptions {
  readonly quick: boolean;
  readonly scenarios: readonly ScenarioName[];
  readonly store: StoreChoice;
  /** The PostgreSQL server (its password is never printed: see databaseServer in the results). */
  readonly databaseUrl: string;
  readonly durationS: number;
  readonly connections: number;
  readonly bodyBytes: number;
  readonly backlog: number;
  readonly scale: number;
  readonly timeoutS: number;
  readonly out: string;
  /** `--replicas N`: the replica scenario with 1 and N relays; null: not run. */
  readonly replicas: number | null;
}

function count(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected a whole number of at least ${min}, got "${raw}"`);
  }
  return n;
}

function isScenario(s: string): s is ScenarioName {
  return (SCENARIOS as readonly string[]).includes(s);
}

function scenarioList(raw: string | undefined): readonly ScenarioName[] {
  if (raw === undefined) return DEFAULT_SCENARIOS;
  const picked = new Set<ScenarioName>();
  for (const part of raw.split(',')) {
    const name = part.trim();
    if (!isScenario(name)) {
      throw new Error(`--scenarios: unknown scenario "${name}" (one of ${SCENARIOS.join(', ')})`);
    }
    picked.add(name);
  }
  // Always in the documented order, whatever order they were named in.
  return SCENARIOS.filter((s) => picked.has(s));
}

function storeChoice(raw: string | undefined): StoreChoice {
  if (raw === undefined) return 'embedded';
  if (raw === 'both' || (STORES as readonly string[]).includes(raw)) return raw as StoreChoice;
  throw new Error(`--store: expected embedded, postgres or both, got "${raw}"`);
}

/** The stores a choice runs on, in the order they run and are printed. */
export function storesOf(choice: StoreChoice): StoreName[] {
  return choice === 'both' ? [...STORES] : [choice];
}

/**
 * Returns null when --help was asked for. `defaultDatabaseUrl` is the caller's
 * POSTERN_TEST_DATABASE_URL, if set.
 */
export function parseOptions(
  argv: string[],
  defaultDatabaseUrl: string | undefined,
): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenarios: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      'body-bytes': { type: 'string' },
      backlog: { type: 'string' },
      scale: { type: 'string' },
      store: { type: 'string' },
      'database-url': { type: 'string' },
      timeout: { type: 'string' },
      replicas: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const quick = values.quick;
  const replicas = values.replicas === undefined ? null : count('replicas', values.replicas, 3, 2);
  const scenarios =
    replicas !== null && values.scenarios === undefined ? [] : scenarioList(values.scenarios);
  const connections = count('connections', values.connections, quick ? 16 : 64, 1);
  const backlog = count('backlog', values.backlog, quick ? 2_000 : 50_000, 1);
  if (scenarios.includes('backlog') && backlog < connections) {
    throw new Error(`--backlog (${backlog}) must be at least --connections (${connections})`);
  }
  const scale = count('scale', values.scale, quick ? 2_000 : 1_000_000, 1);
  // The scale scenario queues in 20 equal slices, each at least one request per connection.
  if (scenarios.includes('scale') && scale < 20 * connections) {
    throw new Error(`--scale (${scale}) must be at least 20 × --connections (${20 * connections})`);
  }
  const store = storeChoice(values.store);
  const databaseUrl = values['database-url'] ?? defaultDatabaseUrl ?? LOCAL_SERVER_URL;
  try {
    new URL(databaseUrl);
  } catch {
    throw new Error('--database-url: expected a postgres:// URL');
  }
  const baseTimeoutS = quick ? 120 : 600;
  const perStoreS = baseTimeoutS + (scenarios.includes('scale') ? Math.ceil(scale / 500) : 0);
  const timeoutS = perStoreS * storesOf(store).length + (replicas === null ? 0 : 600);
  return Object.freeze({
    quick,
    scenarios,
    store,
    databaseUrl,
    durationS: count('duration', values.duration, quick ? 2 : 10, 1),
    connections,
    bodyBytes: count('body-bytes', values['body-bytes'], 1024, 2),
    backlog,
    scale,
    timeoutS: count('timeout', values.timeout, timeoutS, 10),
    out: path.resolve(values.out ?? path.join(ROOT, 'bench-results.json')),
    replicas,
  });
}
