/**
 * The benchmark's flags, parsed once into a frozen object with defaults and clear errors.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './children.ts';

export const USAGE = `Usage: npm run bench -- [options]

  --duration S      seconds of load in each timed scenario        (default 10;    --quick 2)
  --connections N   concurrent connections                        (default 64;    --quick 16)
  --body-bytes N    size of the JSON webhook body                 (default 1024)
  --backlog N       webhooks queued while the agent is away       (default 50000; --quick 2000)
  --timeout S       stop everything and fail after S seconds      (default 600;   --quick 120)
  --out FILE        where to write the results                    (default bench-results.json)
  --quick           a smoke run with the small values above
`;

export interface BenchOptions {
  readonly quick: boolean;
  readonly durationS: number;
  readonly connections: number;
  readonly bodyBytes: number;
  readonly backlog: number;
  readonly timeoutS: number;
  readonly out: string;
}

function count(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected a whole number of at least ${min}, got "${raw}"`);
  }
  return n;
}

/** Returns null when --help was asked for. */
export function parseOptions(argv: string[]): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      connections: { type: 'string' },
      'body-bytes': { type: 'string' },
      backlog: { type: 'string' },
      timeout: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const quick = values.quick;
  const connections = count('connections', values.connections, quick ? 16 : 64, 1);
  const backlog = count('backlog', values.backlog, quick ? 2_000 : 50_000, 1);
  if (backlog < connections) {
    throw new Error(`--backlog (${backlog}) must be at least --connections (${connections})`);
  }
  return Object.freeze({
    quick,
    durationS: count('duration', values.duration, quick ? 2 : 10, 1),
    connections,
    bodyBytes: count('body-bytes', values['body-bytes'], 1024, 2),
    backlog,
    timeoutS: count('timeout', values.timeout, quick ? 120 : 600, 10),
    out: path.resolve(values.out ?? path.join(ROOT, 'bench-results.json')),
  });
}
