/**
 * The results of a run: one JSON document (bench-results.json) and one table for people, with
 * a column per store when both ran, and PostgreSQL's targets beside the embedded store's.
 */
import os from 'node:os';
import type { Check } from './context.ts';
import type { Latency } from './load-job.ts';
import type { BenchOptions, StoreName } from './options.ts';
import { scaleRows, type Row } from './report-scale.ts';
import type { AsyncResult, CpuResult, CpuUse } from './scenario-async.ts';
import type { BacklogResult } from './scenario-backlog.ts';
import type { DirectResult } from './scenario-direct.ts';
import type { PairedResult, PairedRound } from './scenario-pairs.ts';
import { replicasRows, type ReplicasResult } from './scenario-replicas.ts';
import type { ScaleResult } from './scenario-scale.ts';
import type { SyncResult } from './scenario-sync.ts';

/** The scenarios that ran through a relay on one store (`--scenarios`); `cpu` comes with `async`. */
export type StoreScenarios = {
  async?: AsyncResult & { relayRssBytes: number | null };
  sync?: SyncResult;
  backlog?: BacklogResult;
  cpu?: CpuResult;
  scale?: ScaleResult;
};

/** A target of PostgreSQL's (issue: the PostgreSQL backend), judged on this run's figures. */
export type StoreTarget = { name: string; value: string; target: string; ok: boolean | null };

export type Results = {
  startedAt: string;
  finishedAt: string;
  /** The options, the database URL without its password. */
  options: Omit<BenchOptions, 'out'>;
  machine: { node: string; platform: string; cpus: number; loadavg: number[] };
  /** `direct` (no relay), then the relay's scenarios per store that ran (`--store`). */
  scenarios: { direct?: DirectResult; paired?: PairedResult } & {
    [S in StoreName]?: StoreScenarios;
  };
  /** When PostgreSQL ran: its targets (ratios to the embedded store's need both to run). */
  targets: StoreTarget[];
  checks: Check[];
  ok: boolean;
  /** `--replicas N`: 1 relay against N on one database, and the failover. */
  replicas?: ReplicasResult;
};

export function machine(): Results['machine'] {
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(2)} ms`;
const lat = (l: Latency) => `${ms(l.p50)} / ${ms(l.p99)}`;
const mib = (b: number | null) => (b === null ? 'n/a' : `${(b / 2 ** 20).toFixed(0)} MiB`);
const secs = (s: number | null) => (s === null ? 'n/a (not drained)' : `${s.toFixed(2)} s`);
const cpu = (c: CpuUse) =>
  c === null ? 'n/a' : `${c.perThousandS.toFixed(3)} s (${c.cpuS.toFixed(2)} s in all)`;

const msOrNa = (n: number | null) => (n === null ? 'n/a' : ms(n));
/** Attempts that did not deliver (each one a retry the relay had to schedule). */
const retries = (attempts: Record<string, number>) =>
  Object.entries(attempts).reduce(
    (sum, [outcome, n]) => sum + (outcome === 'delivered' ? 0 : n),
    0,
  );

const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const share = (n: number, of: number) => (of > 0 ? `${int(n)} (${pct(n / of)})` : 'n/a');

function directRows(direct: DirectResult): Row[] {
  return [
    [`1 direct, ${direct.connections} conn`, 'requests/s', int(direct.requestsPerS)],
    ['', 'latency p50 / p99', lat(direct.latencyMs)],
    ['', 'non-2xx / errors', `${direct.non2xx} / ${direct.errors}`],
  ];
}

function databaseRow(d: AsyncResult['database']): string {
  if (!d) return 'n/a (no database)';
  return (
    `${d.statementsPerEvent.toFixed(3)} / ${d.commitsPerEvent.toFixed(3)} ` +
    `(${int(d.transactions)} transactions)`
  );
}

function callsRow(d: AsyncResult['database']): string {
  const c = d?.callsPerEvent;
  if (!d || !c) return 'n/a';
  const claims = c.postern_claim;
  const settles = c.postern_settle;
  const other = d.statementsPerEvent - claims - settles;
  return `${claims.toFixed(3)} / ${settles.toFixed(3)} / ${other.toFixed(3)}`;
}

function asyncRows(a: AsyncResult): Row[] {
  return [
    [`2 async, ${a.connections} conn`, 'accepted/s (2xx at the relay)', int(a.acceptedPerS)],
    ['', 'delivered/s (at the app, same window)', int(a.deliveredPerS)],
    ['', 'ingest latency p50 / p99', lat(a.ingestLatencyMs)],
    ['', 'non-2xx / errors', `${a.non2xx} / ${a.errors}`],
    ['', 'drain of the tail after the load', secs(a.drainS)],
    [
      '',
      'accepted / delivered / lost',
      `${int(a.accepted)} / ${int(a.delivered)} / ${int(a.lost)}`,
    ],
    ['', 'extra (202 cut off) / duplicates', `${a.unacknowledgedDelivered} / ${a.duplicates}`],
    [
      '',
      'relay commit mean / failed attempts',
      `${msOrNa(a.meanCommitMs)} / ${retries(a.attempts)}`,
    ],
    ['', 'sent as soon as stored (claimed in the append)', share(a.handedOff, a.accepted)],
    ['', 'database statements / commits per accepted event', databaseRow(a.database ?? null)],
    ['', 'of which claims / settles / other (per event)', callsRow(a.database ?? null)],
  ];
}

/** Rounds in turns, one column per store; the ratios under PostgreSQL. */
function pairedRows(p: PairedResult): string[][] {
  const of = (store: StoreName, pick: (x: PairedRound) => number) =>
    p.rounds
      .filter((x) => x.store === store)
      .map((x) => int(pick(x)))
      .join(' / ');
  const order = p.rounds.map((x) => (x.store === 'embedded' ? 'E' : 'P')).join(' ');
  return [
    [
      `2 paired, ${p.roundS} s rounds`,
      `accepted/s by round (in turns: ${order})`,
      of('embedded', (x) => x.acceptedPerS),
      of('postgres', (x) => x.acceptedPerS),
    ],
    [
      '',
      'delivered/s by round',
      of('embedded', (x) => x.deliveredPerS),
      of('postgres', (x) => x.deliveredPerS),
    ],
    ['', 'PostgreSQL / embedded by pair: accepted/s', '', p.ingestRatios.map(pct).join(', ')],
    ['', 'PostgreSQL / embedded by pair: delivered/s', '', p.deliveredRatios.map(pct).join(', ')],
  ];
}

function syncRows(sync: SyncResult): Row[] {
  return [
    ['3 sync, 1 conn', 'latency p50 / p99 through the relay', lat(sync.relay.latencyMs)],
    ['', 'latency p50 / p99 direct', lat(sync.direct.latencyMs)],
    [
      '',
      'requests/s relay / direct',
      `${int(sync.relay.requestsPerS)} / ${int(sync.direct.requestsPerS)}`,
    ],
    [
      '',
      'answered by the app / fell back to 202',
      `${int(sync.relay.answeredByApp)} / ${int(sync.relay.fellBackTo202)}`,
    ],
  ];
}

function backlogRows(bl: BacklogResult): Row[] {
  return [
    [
      `4 backlog ${int(bl.size)}`,
      `ingest/s, empty queue: first slice / after drain`,
      `${int(bl.ingestEmptyFirstSlicePerS)} / ${int(bl.ingestEmptyAfterDrainPerS)} (${int(bl.slices[0]?.amount ?? 0)} each)`,
    ],
    [
      '',
      `ingest/s, ${int(bl.accepted - (bl.slices[bl.slices.length - 1]?.accepted ?? 0))}+ queued (last slice)`,
      `${int(bl.ingestFullPerS)} (${pct(bl.fullToEmptyRatio)} of empty; ` +
        `within 10 %: ${bl.withinTenPercent ? 'yes' : 'no'})`,
    ],
    ['', 'ingest/s over the whole backlog', int(bl.ingestOverallPerS)],
    ['', 'relay commit mean while queuing', msOrNa(bl.ingestMeanCommitMs)],
    [
      '',
      'relay RSS before / queued / drained',
      `${mib(bl.relayRssBytes.beforeBacklog)} / ${mib(bl.relayRssBytes.queued)} / ${mib(bl.relayRssBytes.drained)}`,
    ],
    [
      '',
      'relay RssAnon (no mapped files) before / queued / drained',
      `${mib(bl.relayRssAnonBytes.beforeBacklog)} / ${mib(bl.relayRssAnonBytes.queued)} / ${mib(bl.relayRssAnonBytes.drained)}`,
    ],
    [
      '',
      'drain rate (from agent connect)',
      bl.drainPerS === null ? 'n/a' : `${int(bl.drainPerS)}/s in ${secs(bl.drainS)}`,
    ],
    ['', 'failed attempts during the drain', String(retries(bl.drainAttempts))],
    ['', 'accepted / drained / lost', `${int(bl.accepted)} / ${int(bl.drained)} / ${int(bl.lost)}`],
  ];
}

function cpuRows(c: CpuResult): Row[] {
  return [
    ['5 CPU per 1,000 webhooks', 'relay (during scenario 2)', cpu(c.relay)],
    ['', 'agent (during scenario 2)', cpu(c.agent)],
  ];
}

/** PostgreSQL's targets: ratios to the embedded store (when both ran) and round trips. */
export function storeTargets(r: Pick<Results, 'scenarios' | 'options'>): StoreTarget[] {
  const pg = r.scenarios.postgres;
  if (!pg) return [];
  const emb = r.scenarios.embedded;
  const out: StoreTarget[] = [];
  const ratio = (name: string, p: number | undefined, e: number | undefined, min: number) => {
    if (p === undefined || e === undefined) return;
    const x = e > 0 ? p / e : 0;
    out.push({
      name,
      value: `${pct(x)} (${int(p)} / ${int(e)})`,
      target: `≥ ${pct(min)}`,
      ok: x >= min,
    });
  };
  const paired = r.scenarios.paired;
  if (paired) {
    // Judged on the rounds in turns: two runs a minute apart compare the machine's drift too.
    const byPair = (name: string, ratios: number[], x: number, min: number) =>
      out.push({
        name,
        value: `${pct(x)} (median of ${ratios.map(pct).join(', ')})`,
        target: `≥ ${pct(min)}`,
        ok: x >= min,
      });
    byPair('ingest, accepted/s (2 paired)', paired.ingestRatios, paired.ingestMedian, 0.6);
    byPair(
      'delivered end to end, delivered/s (2 paired)',
      paired.deliveredRatios,
      paired.deliveredMedian,
      0.5,
    );
  } else {
    ratio('ingest, accepted/s (2 async)', pg.async?.acceptedPerS, emb?.async?.acceptedPerS, 0.6);
    ratio(
      'delivered end to end, delivered/s (2 async)',
      pg.async?.deliveredPerS,
      emb?.async?.deliveredPerS,
      0.5,
    );
  }
  const pgSync = pg.sync?.relay.latencyMs.p50;
  const embSync = emb?.sync?.relay.latencyMs.p50;
  if (pgSync !== undefined && embSync !== undefined) {
    out.push({
      name: 'sync p50, PostgreSQL − embedded (3 sync)',
      value: `${(pgSync - embSync).toFixed(2)} ms (${ms(pgSync)} − ${ms(embSync)})`,
      target: '≤ 1 ms',
      ok: pgSync - embSync <= 1,
    });
  }
  const d = pg.async?.database;
  if (pg.async) {
    const conn = pg.async.connections;
    out.push({
      name: `database statements per accepted event, ${conn} conn (2 async)`,
      value: d ? d.statementsPerEvent.toFixed(3) : 'n/a',
      // The target is set at 64 connections: at fewer, fewer events share each statement.
      target: conn === 64 ? '≤ 0.5' : '≤ 0.5 at 64 conn (not judged)',
      ok: d && conn === 64 ? d.statementsPerEvent <= 0.5 : null,
    });
  }
  return out;
}

/** Rows of one kind for each store, side by side (the rows of a kind have one shape). */
function zipStores(perStore: (Row[] | null)[]): string[][] {
  const n = Math.max(0, ...perStore.map((rows) => rows?.length ?? 0));
  return Array.from({ length: n }, (_, i) => {
    const first = perStore.find((rows) => rows?.[i])?.[i] ?? ['', '', ''];
    return [first[0], first[1], ...perStore.map((rows) => rows?.[i]?.[2] ?? 'n/a')];
  });
}

function render(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((x) => (x[c] ?? '').length)));
  const line = (x: string[]) =>
    x
      .map((cell, c) => (c === x.length - 1 ? cell : cell.padEnd(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  // The last column is not padded, and its rule stops at 24 (a failed check names itself).
  const rule = widths.map((w, c) => '-'.repeat(c === widths.length - 1 ? Math.min(w, 24) : w));
  return [line(head), line(rule), ...rows.map(line)];
}

export function table(r: Results): string {
  const stores = (['embedded', 'postgres'] as const).filter((s) => r.scenarios[s]);
  const of = <T>(pick: (s: StoreScenarios) => T | undefined, rows: (x: T) => Row[]) =>
    zipStores(
      stores.map((s) => {
        const x = pick(r.scenarios[s]!);
        return x === undefined ? null : rows(x);
      }),
    );
  const direct = r.scenarios.direct;
  const rows: string[][] = [
    ...(direct
      ? directRows(direct).map((x) => [x[0], x[1], x[2], ...stores.slice(1).map(() => '')])
      : []),
    ...of((s) => s.async, asyncRows),
    ...of((s) => s.sync, syncRows),
    ...of((s) => s.backlog, backlogRows),
    ...of((s) => s.cpu, cpuRows),
    ...of((s) => s.scale, scaleRows),
    ...(r.scenarios.paired && stores.length === 2 ? pairedRows(r.scenarios.paired) : []),
  ];
  const failed = r.checks.filter((x) => !x.ok);
  rows.push([
    'checks',
    `${r.checks.length - failed.length} of ${r.checks.length} passed`,
    failed.length ? failed.map((f) => f.name).join('; ') : 'ok',
  ]);
  const out = render(['scenario', 'measure', ...stores], rows);
  if (r.replicas) {
    const [head, ...more] = replicasRows(r.replicas);
    out.push('', ...render(head!, more));
  }
  if (r.targets.length > 0) {
    out.push('');
    out.push(
      ...render(
        ['PostgreSQL target', 'value', 'target', 'met'],
        r.targets.map((t) => [
          t.name,
          t.value,
          t.target,
          t.ok === null ? 'n/a' : t.ok ? 'yes' : 'NO',
        ]),
      ),
    );
  }
  return out.join('\n');
}
