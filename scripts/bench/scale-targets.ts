/**
 * The targets of the scale scenario (issue #11, item 7), each judged against the figures of
 * the run: met, missed, or null when it could not be measured (no /proc, not drained, the
 * backlog scenario not run). Targets are reported, not enforced: the exit code follows the
 * correctness checks only, since speed depends on the machine.
 */
import type { ScaleResult } from './scenario-scale.ts';

export type Target = { name: string; target: string; value: string; ok: boolean | null };

const MIB = 2 ** 20;
export const RSS_ANON_LIMIT_BYTES = 250 * MIB;
export const RSS_ANON_GROWTH_BYTES = 50 * MIB;
export const RESTART_SLACK_MS = 1_000;
export const INGEST_RATIO = 0.9;
export const PAGE_MS = 20;

const mib = (b: number) => `${(b / MIB).toFixed(0)} MiB`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

export function scaleTargets(r: Omit<ScaleResult, 'targets'>): Target[] {
  const { memory, restart, ingest, page, drain } = r;
  const anon = [...memory.marks, memory.retained, memory.afterRestart, memory.max].map(
    (m) => m.rssAnonBytes,
  );
  const highest = anon.every((a) => a !== null) ? Math.max(...anon) : null;
  const first = memory.marks[0]?.rssAnonBytes ?? null;
  const last = memory.marks[memory.marks.length - 1]?.rssAnonBytes ?? null;
  const growth = first === null || last === null ? null : last - first;
  const firstQueued = int(memory.marks[0]?.queued ?? 0);
  const lastQueued = int(memory.marks[memory.marks.length - 1]?.queued ?? 0);
  const pageTarget = (p: ScaleResult['page']['queued']): Target => ({
    name: `page of 50 ${p.status}, newest first, median`,
    target: `≤ ${PAGE_MS} ms`,
    value: `${p.p50Ms.toFixed(2)} ms (p99 ${p.p99Ms.toFixed(2)} ms)`,
    ok: p.p50Ms <= PAGE_MS,
  });
  return [
    {
      name: 'relay RssAnon, highest at any point',
      target: `≤ ${mib(RSS_ANON_LIMIT_BYTES)}`,
      value: highest === null ? 'n/a' : mib(highest),
      ok: highest === null ? null : highest <= RSS_ANON_LIMIT_BYTES,
    },
    {
      name: `relay RssAnon growth, ${firstQueued} → ${lastQueued} queued`,
      target: `≤ ${mib(RSS_ANON_GROWTH_BYTES)}`,
      value: growth === null ? 'n/a' : `${growth < 0 ? '-' : '+'}${mib(Math.abs(growth))}`,
      ok: growth === null ? null : growth <= RSS_ANON_GROWTH_BYTES,
    },
    {
      name: `restart to ready, ${int(r.queued)} queued vs empty`,
      target: `≤ empty + ${RESTART_SLACK_MS} ms`,
      value: `${restart.fullMs} ms vs ${restart.emptyMs} ms`,
      ok: restart.fullMs <= restart.emptyMs + RESTART_SLACK_MS,
    },
    {
      name: `ingest/s, ${int(r.accepted)} queued vs empty`,
      target: `≥ ${(INGEST_RATIO * 100).toFixed(0)} % of empty`,
      value:
        `${int(ingest.full.perS)} vs ${int(ingest.empty.perS)} ` +
        `(${(ingest.ratio * 100).toFixed(0)} %)`,
      ok: ingest.ratio >= INGEST_RATIO,
    },
    pageTarget(page.queued),
    pageTarget(page.delivered),
    {
      name: `drain/s, ${int(drain.events)} vs the backlog scenario`,
      target: '≥ backlog drain/s',
      value:
        `${drain.perS === null ? 'n/a' : int(drain.perS)} vs ` +
        `${drain.backlogPerS === null ? 'n/a (backlog not run)' : int(drain.backlogPerS)}`,
      ok:
        drain.perS === null || drain.backlogPerS === null ? null : drain.perS >= drain.backlogPerS,
    },
  ];
}
