/**
 * Scenario 6, scale: the relay with N webhooks queued (1,000,000 by default) and then N
 * delivered and retained, agent away while they queue. Measures the relay's own memory as the
 * queue grows, restart-to-ready after kill -9 against an empty relay's, ingest on an empty
 * store against ingest with N queued (same load, same duration), one page of the event list,
 * and the drain once the agent is back. The figures are set beside the targets of issue #11.
 */
import type { Bench } from './context.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS, type Latency } from './load-job.ts';
import { MemoryWatch, type Memory, type PeakMemory } from './memory-watch.ts';
import { pageLatency, type PageLatency } from './page-latency.ts';
import {
  crashAndRestart,
  createChannel,
  pairAgent,
  startAgent,
  startRelay,
  stopRelay,
  writeAgentConfig,
  type Relay,
} from './postern.ts';
import { fill, sendAgentAway } from './scenario-backlog.ts';
import { scaleTargets, type Target } from './scale-targets.ts';

/** The queue is filled in this many equal slices; memory is sampled after each. */
const SLICES = 20;
/** Restarts timed per case; the median is the figure (a start through tsx varies). */
const RESTARTS = 3;

export type ScaleMark = Memory & { queued: number };

export type Ingest = { accepted: number; durationS: number; perS: number; latencyMs: Latency };

export type ScaleResult = {
  size: number;
  connections: number;
  /** Events queued when the relay was killed, and when the agent came back. */
  queued: number;
  memory: {
    /** After every slice of the fill. */
    slices: ScaleMark[];
    /** At N/10, N/2 and N queued (100,000 / 500,000 / 1,000,000 by default). */
    marks: ScaleMark[];
    afterRestart: Memory;
    /** Once every event was delivered, and `retained` events are kept. */
    retained: ScaleMark;
    /** The highest seen during the whole scenario, sampled every 200 ms. */
    max: PeakMemory;
  };
  /** Spawn to the first 200 from /readyz after kill -9; each sample, and their median. */
  restart: {
    emptySamplesMs: number[];
    emptyMs: number;
    fullSamplesMs: number[];
    fullMs: number;
    /** The very first start, on a fresh data dir (for reference). */
    firstStartMs: number;
  };
  ingest: { empty: Ingest; full: Ingest; ratio: number };
  page: { queued: PageLatency; delivered: PageLatency };
  drain: {
    events: number;
    s: number | null;
    perS: number | null;
    /** The backlog scenario's drain rate in the same run, when it ran. */
    backlogPerS: number | null;
  };
  accepted: number;
  non2xx: number;
  errors: number;
  deliveredWhileAway: number;
  delivered: number;
  lost: number;
  duplicates: number;
  /** Of the events taken in by the empty-queue ingest run, those that never reached the app. */
  emptyIngestLost: number;
  targets: Target[];
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** Restarts `relay` after kill -9 `RESTARTS` times; returns the last one and every time. */
async function timeRestarts(b: Bench, relay: Relay, watch: MemoryWatch, what: string) {
  const samples: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    relay = await crashAndRestart(b.kids, relay);
    watch.follow(relay.proc.pid);
    samples.push(relay.readyMs);
    b.progress(`scale: ${what}: kill -9, ready again in ${relay.readyMs} ms`);
  }
  return { relay, samples };
}

/** A timed run at the ingress with the agent away: every accepted event stays queued. */
async function ingest(b: Bench, url: string): Promise<Ingest & { ids: string[] }> {
  const r = await b.load.run(b.job(url, { collectIds: true }));
  const durationS = elapsedS(r);
  const perS = r.ids.length / durationS;
  return { accepted: r.ids.length, durationS, perS, latencyMs: r.latencyMs, ids: r.ids };
}

export async function runScale(b: Bench, backlogDrainPerS: number | null): Promise<ScaleResult> {
  const n = b.opts.scale;
  let relay = await startRelay(b.kids, b.databases);
  const firstStartMs = relay.readyMs;
  const watch = new MemoryWatch(relay.proc.pid, 'first start');
  const channel = await createChannel(relay, { name: 'bench' });
  const { agentId, stateDir } = await pairAgent(b.kids, relay, 'bench-scale', [channel.id]);
  const config = await writeAgentConfig(stateDir, [{ channel: 'bench', target: `${b.app.url}/` }]);

  watch.phase('restarts, empty');
  const empty = await timeRestarts(b, relay, watch, 'empty relay');
  relay = empty.relay;

  // Warm up with the agent present, then ingest for a fixed time with it away (empty store).
  watch.phase('warm-up and ingest on an empty queue');
  let agent = await startAgent(b.kids, stateDir, config);
  await warmUp(b, channel.ingress, b.relayWarmup, b.opts.connections);
  await sendAgentAway(b, relay, agentId, agent.proc);
  b.progress(`scale: ingest on an empty queue, ${b.opts.connections} connections`);
  const { ids: emptyIds, ...emptyIngest } = await ingest(b, channel.ingress);
  b.progress(`scale: ${Math.round(emptyIngest.perS)}/s on an empty queue; draining those`);
  agent = await startAgent(b.kids, stateDir, config);
  const emptyDone = await awaitDelivery(b, emptyIds, 'scale: empty-queue ingest');
  await sendAgentAway(b, relay, agentId, agent.proc);
  await b.app.reset();

  const bounds = Array.from({ length: SLICES }, (_, i) => Math.round((n * (i + 1)) / SLICES));
  const amounts = bounds.map((x, i) => x - (bounds[i - 1] ?? 0));
  const slices: ScaleMark[] = [];
  watch.phase('queuing');
  const filled = await fill(b, relay, channel.ingress, amounts, 'scale', (s) =>
    slices.push({ queued: s.queuedAfter, ...watch.sample() }),
  );
  // Slices 2, 10 and 20 of 20 end at N/10, N/2 and N.
  const marks = [1, SLICES / 2 - 1, SLICES - 1].flatMap((i) => slices[i] ?? []);

  watch.phase('ingest and pages with the queue full');
  b.progress(`scale: ingest with ${filled.ids.length} queued, same load`);
  const { ids: fullIds, ...fullIngest } = await ingest(b, channel.ingress);
  const queuedIds = [...filled.ids, ...fullIds];
  b.progress(`scale: ${Math.round(fullIngest.perS)}/s with ${filled.ids.length} queued`);

  const pageQueued = await pageLatency(relay, channel.id, 'queued');
  b.progress(`scale: a page of queued events, p50 ${pageQueued.p50Ms.toFixed(2)} ms`);

  watch.phase('restarts with the queue full');
  const full = await timeRestarts(b, relay, watch, `${queuedIds.length} queued`);
  relay = full.relay;
  const afterRestart = watch.sample();
  const away = await b.app.stats();

  b.progress(`scale: starting the agent to drain ${queuedIds.length}`);
  watch.phase('drain');
  agent = await startAgent(b.kids, stateDir, config);
  const done = await awaitDelivery(b, queuedIds, 'scale drain');
  const drainS =
    done.missing === 0 && done.lastExpectedAt !== null
      ? Math.max(0.001, (done.lastExpectedAt - agent.connectedAt) / 1000)
      : null;

  watch.phase('pages of delivered events');
  const pageDelivered = await pageLatency(relay, channel.id, 'delivered');
  b.progress(`scale: a page of delivered events, p50 ${pageDelivered.p50Ms.toFixed(2)} ms`);
  const retainedCount = b.relayWarmup + emptyIds.length + queuedIds.length;
  const retained = { queued: retainedCount, ...watch.sample() };
  const max = watch.stop();
  await b.kids.stop(agent.proc.child);
  await stopRelay(b.kids, relay);

  const result: Omit<ScaleResult, 'targets'> = {
    size: n,
    connections: b.opts.connections,
    queued: queuedIds.length,
    memory: { slices, marks, afterRestart, retained, max },
    restart: {
      emptySamplesMs: empty.samples,
      emptyMs: median(empty.samples),
      fullSamplesMs: full.samples,
      fullMs: median(full.samples),
      firstStartMs,
    },
    ingest: {
      empty: emptyIngest,
      full: fullIngest,
      ratio: emptyIngest.perS > 0 ? fullIngest.perS / emptyIngest.perS : 0,
    },
    page: { queued: pageQueued, delivered: pageDelivered },
    drain: {
      events: queuedIds.length,
      s: drainS,
      perS: drainS === null ? null : queuedIds.length / drainS,
      backlogPerS: backlogDrainPerS,
    },
    accepted: filled.ids.length,
    non2xx: filled.non2xx,
    errors: filled.errors,
    deliveredWhileAway: away.unique,
    delivered: done.expected - done.missing,
    lost: done.missing,
    duplicates: done.duplicates,
    emptyIngestLost: emptyDone.missing,
  };
  return { ...result, targets: scaleTargets(result) };
}

/** The correctness checks of the scenario (the run fails if one does not hold). */
export function checkScale(b: Bench, s: ScaleResult): void {
  b.check(
    'scale: all accepted',
    s.accepted === s.size && s.non2xx === 0 && s.errors === 0,
    `${s.accepted} of ${s.size} answered 2xx with an id, ${s.non2xx} non-2xx, ${s.errors} errors`,
  );
  b.check(
    'scale: none delivered while the agent was away',
    s.deliveredWhileAway === 0,
    `${s.deliveredWhileAway} delivered`,
  );
  b.check(
    'scale: everything queued before kill -9 was drained after it',
    s.delivered === s.queued && s.lost === 0,
    `${s.delivered} of ${s.queued} reached the app, ${s.lost} lost`,
  );
  b.check(
    'scale: the empty-queue ingest lost nothing',
    s.emptyIngestLost === 0,
    `${s.emptyIngestLost} of ${s.ingest.empty.accepted} never reached the app`,
  );
  for (const p of [s.page.queued, s.page.delivered]) {
    b.check(`scale: pages of ${p.status} events are right`, p.problem === null, p.problem ?? 'ok');
  }
}
