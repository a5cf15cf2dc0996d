/**
 * The scale scenario's rows of the results table: its figures, then each target beside the
 * figure it is judged on.
 */
import type { Memory } from './memory-watch.ts';
import type { ScaleResult } from './scenario-scale.ts';

export type Row = [string, string, string];

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mib = (b: number | null) => (b === null ? 'n/a' : `${(b / 2 ** 20).toFixed(0)} MiB`);
const mem = (m: Memory) => `${mib(m.rssAnonBytes)} / ${mib(m.rssBytes)}`;
const ms = (n: number) => `${n.toFixed(2)} ms`;
const verdict = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'pass' : 'FAIL');

export function scaleRows(s: ScaleResult): Row[] {
  const { memory: m, restart, ingest, page, drain } = s;
  const rows: Row[] = [
    ...m.marks.map((x, i): Row => [
      i === 0 ? `6 scale ${int(s.size)}` : '',
      `relay RssAnon / RSS, ${int(x.queued)} queued`,
      mem(x),
    ]),
    ['', 'relay RssAnon / RSS, just after kill -9 and restart', mem(m.afterRestart)],
    ['', `relay RssAnon / RSS, ${int(m.retained.queued)} delivered, retained`, mem(m.retained)],
    [
      '',
      'relay RssAnon / RSS, highest during the scenario',
      `${mem(m.max)} (RssAnon's during ${m.max.rssAnonPeakDuring})`,
    ],
    [
      '',
      `restart to /readyz 200 after kill -9, ${int(s.queued)} queued`,
      `${restart.fullMs} ms (median of ${restart.fullSamplesMs.join(', ')})`,
    ],
    [
      '',
      'restart to /readyz 200 after kill -9, empty',
      `${restart.emptyMs} ms (median of ${restart.emptySamplesMs.join(', ')}; first start ` +
        `${restart.firstStartMs} ms)`,
    ],
    [
      '',
      `ingest/s, empty queue, ${s.connections} conn`,
      `${int(ingest.empty.perS)} (${int(ingest.empty.accepted)} in ` +
        `${ingest.empty.durationS.toFixed(1)} s, p50 ${ms(ingest.empty.latencyMs.p50)})`,
    ],
    [
      '',
      `ingest/s, ${int(s.accepted)} queued, ${s.connections} conn`,
      `${int(ingest.full.perS)} (${int(ingest.full.accepted)} in ` +
        `${ingest.full.durationS.toFixed(1)} s, p50 ${ms(ingest.full.latencyMs.p50)})`,
    ],
    ...[page.queued, page.delivered].map((p): Row => [
      '',
      `page of 50 ${p.status} p50 / p99 (first)`,
      `${ms(p.p50Ms)} / ${ms(p.p99Ms)} (${ms(p.firstMs)})`,
    ]),
    [
      '',
      `drain rate (from agent connect), ${int(drain.events)}`,
      drain.perS === null || drain.s === null
        ? 'n/a (not drained)'
        : `${int(drain.perS)}/s in ${drain.s.toFixed(2)} s`,
    ],
    [
      '',
      'accepted / drained / lost',
      `${int(s.accepted + ingest.full.accepted)} / ${int(s.delivered)} / ${int(s.lost)}`,
    ],
  ];
  for (const t of s.targets) {
    rows.push(['', `target: ${t.name} ${t.target}`, `${verdict(t.ok)}: ${t.value}`]);
  }
  return rows;
}
