/**
 * The results of a run: one JSON document (bench-results.json) and one table for people.
 */
import os from 'node:os';
import type { Check } from './context.ts';
import type { Latency } from './load-job.ts';
import type { BenchOptions } from './options.ts';
import { scaleRows, type Row } from './report-scale.ts';
import type { AsyncResult, CpuResult, CpuUse } from './scenario-async.ts';
import type { BacklogResult } from './scenario-backlog.ts';
import type { DirectResult } from './scenario-direct.ts';
import type { ScaleResult } from './scenario-scale.ts';
import type { SyncResult } from './scenario-sync.ts';

export type Results = {
  startedAt: string;
  finishedAt: string;
  options: Omit<BenchOptions, 'out'>;
  machine: { node: string; platform: string; cpus: number; loadavg: number[] };
  /** Only the scenarios that ran (`--scenarios`); `cpu` comes with `async`. */
  scenarios: {
    direct?: DirectResult;
    async?: AsyncResult & { relayRssBytes: number | null };
    sync?: SyncResult;
    backlog?: BacklogResult;
    cpu?: CpuResult;
    scale?: ScaleResult;
  };
  checks: Check[];
  ok: boolean;
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

function directRows(direct: DirectResult): Row[] {
  return [
    [`1 direct, ${direct.connections} conn`, 'requests/s', int(direct.requestsPerS)],
    ['', 'latency p50 / p99', lat(direct.latencyMs)],
    ['', 'non-2xx / errors', `${direct.non2xx} / ${direct.errors}`],
  ];
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

export function table(r: Results): string {
  const { direct, async: a, sync, backlog, cpu: c, scale } = r.scenarios;
  const rows: Row[] = [
    ...(direct ? directRows(direct) : []),
    ...(a ? asyncRows(a) : []),
    ...(sync ? syncRows(sync) : []),
    ...(backlog ? backlogRows(backlog) : []),
    ...(c ? cpuRows(c) : []),
    ...(scale ? scaleRows(scale) : []),
  ];
  const failed = r.checks.filter((x) => !x.ok);
  rows.push([
    'checks',
    `${r.checks.length - failed.length} of ${r.checks.length} passed`,
    failed.length ? failed.map((f) => f.name).join('; ') : 'ok',
  ]);
  const w0 = Math.max(...rows.map((x) => x[0].length), 'scenario'.length);
  const w1 = Math.max(...rows.map((x) => x[1].length), 'measure'.length);
  const line = (x: Row) => `${x[0].padEnd(w0)}  ${x[1].padEnd(w1)}  ${x[2]}`;
  const out = [
    line(['scenario', 'measure', 'value']),
    `${'-'.repeat(w0)}  ${'-'.repeat(w1)}  ${'-'.repeat(24)}`,
  ];
  for (const row of rows) out.push(line(row));
  return out.join('\n');
}
