/**
 * Scenario 2 in turns (with `--store both`): PostgreSQL's rates against the embedded store's,
 * taken so that the machine's drift weighs on both alike. One relay and agent on each store,
 * both up and warm; short async rounds in the order E P P E E P (each store first as often as
 * second); the ratio of each pair of neighbouring rounds, and their median, are what
 * PostgreSQL's ingest and delivery targets are judged on. A machine whose speed drifts
 * several-fold within a minute makes two runs a minute apart, as scenario 2 takes them, compare
 * its drift as much as the stores.
 */
import type { Bench } from './context.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS } from './load-job.ts';
import type { StoreName } from './options.ts';
import { startPipeline, type Pipeline } from './pipeline.ts';

/** Each store first as often as second. */
const ORDER: readonly StoreName[] = [
  'embedded',
  'postgres',
  'postgres',
  'embedded',
  'embedded',
  'postgres',
];

export type PairedRound = {
  store: StoreName;
  accepted: number;
  acceptedPerS: number;
  deliveredPerS: number;
  lost: number;
};

export type PairedResult = {
  /** Seconds of load in each round (half of --duration). */
  roundS: number;
  rounds: PairedRound[];
  /** PostgreSQL / embedded, for each pair of neighbouring rounds, and their median. */
  ingestRatios: number[];
  deliveredRatios: number[];
  ingestMedian: number;
  deliveredMedian: number;
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function round(b: Bench, store: StoreName, pipe: Pipeline, roundS: number) {
  b.store = store;
  await b.app.reset();
  const r = await b.load.run(b.job(pipe.ingress, { collectIds: true, durationS: roundS }));
  const window = await b.app.stats({ from: r.startedAt, to: r.lastResponseAt });
  const done = await awaitDelivery(b, r.ids, `paired round on ${store}`);
  const lost = r.ids.length - (done.expected - done.missing);
  b.check('paired rounds: nothing accepted was lost', lost === 0, `${lost} never reached the app`);
  return {
    store,
    accepted: r.ids.length,
    acceptedPerS: r.ids.length / elapsedS(r),
    deliveredPerS: window.inWindow / elapsedS(r),
    lost,
  };
}

export async function runPairs(b: Bench): Promise<PairedResult> {
  const roundS = Math.max(1, Math.round(b.opts.durationS / 2));
  const pipes = new Map<StoreName, Pipeline>();
  try {
    for (const store of ['embedded', 'postgres'] as const) {
      b.store = store;
      const pipe = await startPipeline(b);
      pipes.set(store, pipe);
      await warmUp(b, pipe.ingress, b.relayWarmup, b.opts.connections);
    }
    const rounds: PairedRound[] = [];
    for (const store of ORDER) {
      const r = await round(b, store, pipes.get(store)!, roundS);
      b.progress(`2 paired: ${store}, ${Math.round(r.acceptedPerS)} accepted/s`);
      rounds.push(r);
    }
    const ingestRatios: number[] = [];
    const deliveredRatios: number[] = [];
    for (let i = 0; i + 1 < rounds.length; i += 2) {
      const [x, y] = [rounds[i]!, rounds[i + 1]!];
      const [pg, emb] = x.store === 'postgres' ? [x, y] : [y, x];
      ingestRatios.push(emb.acceptedPerS > 0 ? pg.acceptedPerS / emb.acceptedPerS : 0);
      deliveredRatios.push(emb.deliveredPerS > 0 ? pg.deliveredPerS / emb.deliveredPerS : 0);
    }
    return {
      roundS,
      rounds,
      ingestRatios,
      deliveredRatios,
      ingestMedian: median(ingestRatios),
      deliveredMedian: median(deliveredRatios),
    };
  } finally {
    for (const pipe of pipes.values()) await pipe.stop();
  }
}
