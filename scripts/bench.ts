/**
 * `npm run bench`: Postern's benchmark. The load generator (autocannon), the target app, the
 * relay and the agent each run in their own process on 127.0.0.1, so none of them takes CPU
 * from another's event loop. Scenarios:
 *
 *   1. direct: load straight at the app, the reference;
 *   2. async: load at an async channel, every accepted webhook followed to the app; with
 *      `--store both`, then in turns too (2 paired: short rounds E P P E E P on two relays up
 *      at once), which is what PostgreSQL's rate targets are judged on;
 *   3. sync: one connection through a sync channel, beside one connection direct;
 *   4. backlog: N webhooks queued while the agent is away, then drained;
 *   5. CPU seconds of the relay and the agent per 1,000 webhooks of scenario 2;
 *   6. scale (only when asked for, `--scenarios scale`): N webhooks queued (1,000,000 by
 *      default), the relay's memory, restart after kill -9, ingest, a page of the event list
 *      and the drain at that size, beside their targets;
 *   7. replicas (`--replicas N`, on PostgreSQL): 1 relay, then N on one database behind a
 *      round-robin load balancer, agents connected through it: delivered rate, statements per
 *      delivered event, and the time from kill -9 of a relay to its agents delivering again.
 *
 * `--scenarios` picks which run (default 1 to 5); `--store` the relay's store: embedded,
 * postgres (a fresh database per relay, dropped after), or both (scenarios 2 to 6 once on each,
 * side by side, with PostgreSQL's targets against the embedded store's figures). Prints one
 * table on stdout (progress goes to stderr), writes bench-results.json, and exits non-zero if
 * any accepted webhook was not delivered, or on error or the overall timeout.
 * See scripts/bench/options.ts for the flags.
 */
import { writeFile } from 'node:fs/promises';
import { AppClient } from './bench/app-client.ts';
import { Children } from './bench/children.ts';
import { Bench } from './bench/context.ts';
import { BenchDatabases } from './bench/databases.ts';
import { LoadClient } from './bench/load-client.ts';
import {
  parseOptions,
  storesOf,
  USAGE,
  type BenchOptions,
  type ScenarioName,
} from './bench/options.ts';
import { startPipeline } from './bench/pipeline.ts';
import { machine, storeTargets, table, type Results, type StoreScenarios } from './bench/report.ts';
import { runAsync } from './bench/scenario-async.ts';
import { runPairs } from './bench/scenario-pairs.ts';
import { runBacklog, type BacklogResult } from './bench/scenario-backlog.ts';
import { runDirect } from './bench/scenario-direct.ts';
import { checkReplicas, runReplicas } from './bench/scenario-replicas.ts';
import { checkScale, runScale } from './bench/scenario-scale.ts';
import { runSync } from './bench/scenario-sync.ts';
import { redactUrl } from '../server/store/postgres/url.ts';

/** Scenarios 2, 3 and 5 share one relay and agent. */
async function runThroughRelay(b: Bench, want: Set<ScenarioName>): Promise<StoreScenarios> {
  const { opts } = b;
  const out: StoreScenarios = {};
  const pipe = await startPipeline(b);
  const { relay } = pipe;

  if (want.has('async')) {
    b.progress(`2 async: ${opts.connections} connections for ${opts.durationS} s`);
    const asyncRun = await runAsync(b, relay, pipe.ingress, pipe.agentPid);
    const a = asyncRun.async;
    b.progress(`2 async: done, ${Math.round(a.acceptedPerS)} accepted/s, ${a.lost} lost`);
    b.check(
      'async: nothing accepted was lost',
      a.lost === 0,
      `${a.lost} of ${a.accepted} never reached the app`,
    );
    b.check(
      'async: delivered == accepted',
      a.delivered === a.accepted,
      `${a.delivered} delivered, ${a.accepted} accepted`,
    );
    out.async = { ...a, relayRssBytes: asyncRun.relayRssBytes };
    out.cpu = asyncRun.cpu;
  }

  if (want.has('sync')) {
    b.progress(`3 sync: 1 connection for ${opts.durationS} s, direct then through the relay`);
    const sync = await runSync(b, pipe.syncIngress);
    b.progress(`3 sync: done, p50 ${sync.relay.latencyMs.p50.toFixed(2)} ms through the relay`);
    b.check(
      'sync: nothing accepted was lost',
      sync.relay.lost === 0,
      `${sync.relay.lost} never reached the app`,
    );
    b.check(
      'sync: the app answered through the tunnel',
      sync.relay.answeredByApp > 0,
      `${sync.relay.answeredByApp} answers 200`,
    );
    out.sync = sync;
  }
  await pipe.stop();
  return out;
}

function checkBacklog(b: Bench, backlog: BacklogResult): void {
  b.check(
    'backlog: all accepted',
    backlog.accepted === backlog.size,
    `${backlog.accepted} of ${backlog.size} answered 2xx with an id`,
  );
  b.check(
    'backlog: none delivered while the agent was away',
    backlog.deliveredWhileAway === 0,
    `${backlog.deliveredWhileAway} delivered`,
  );
  b.check(
    'backlog: drained == backlog size',
    backlog.drained === backlog.size,
    `${backlog.drained} of ${backlog.size} reached the app`,
  );
  b.check('backlog: nothing lost', backlog.lost === 0, `${backlog.lost} never reached the app`);
  b.check(
    'backlog: the empty-queue recheck lost nothing',
    backlog.recheck.accepted === backlog.recheck.sent && backlog.recheck.lost === 0,
    `${backlog.recheck.accepted} of ${backlog.recheck.sent} accepted, ${backlog.recheck.lost} lost`,
  );
}

/** Scenarios 2 to 6 on the store `b.store`. */
async function runOnStore(b: Bench, want: Set<ScenarioName>): Promise<StoreScenarios> {
  const { opts } = b;
  let out: StoreScenarios = {};
  if (want.has('async') || want.has('sync')) out = { ...out, ...(await runThroughRelay(b, want)) };
  if (want.has('backlog')) {
    b.progress(`4 backlog: ${opts.backlog} webhooks into a fresh relay with the agent away`);
    const backlog = await runBacklog(b);
    b.progress(`4 backlog: done, drained ${backlog.drained} of ${backlog.size}`);
    checkBacklog(b, backlog);
    out.backlog = backlog;
  }
  if (want.has('scale')) {
    b.progress(`6 scale: ${opts.scale} webhooks queued into a fresh relay with the agent away`);
    const scale = await runScale(b, out.backlog?.drainPerS ?? null);
    b.progress(`6 scale: done, drained ${scale.delivered} of ${scale.queued}`);
    checkScale(b, scale);
    out.scale = scale;
  }
  return out;
}

async function runAll(b: Bench): Promise<Results['scenarios']> {
  const { opts } = b;
  const want = new Set(opts.scenarios);
  const out: Results['scenarios'] = {};
  if (want.has('direct')) {
    b.progress(`1 direct: ${opts.connections} connections for ${opts.durationS} s`);
    out.direct = await runDirect(b, opts.connections);
    b.progress(`1 direct: done, ${Math.round(out.direct.requestsPerS)} requests/s`);
  }
  if (!opts.scenarios.some((s) => s !== 'direct')) return out;
  for (const store of storesOf(opts.store)) {
    b.store = store;
    b.progress(`the relay's scenarios on the ${store} store`);
    out[store] = await runOnStore(b, want);
  }
  if (opts.store === 'both' && want.has('async')) {
    b.progress(
      `2 paired: async rounds of ${Math.max(1, Math.round(opts.durationS / 2))} s in turns`,
    );
    out.paired = await runPairs(b);
  }
  return out;
}

async function main(
  opts: BenchOptions,
  kids: Children,
  pg: BenchDatabases | null,
  deadline: number,
): Promise<boolean> {
  const startedAt = new Date().toISOString();
  const [app, load] = await Promise.all([AppClient.start(kids), LoadClient.start(kids)]);
  const b = new Bench(opts, kids, app, load, deadline, pg);
  b.progress(
    `starting${opts.quick ? ' (quick)' : ''}: ` +
      (opts.store === 'both' ? 'both stores' : `${opts.store} store`) +
      (pg ? ` (PostgreSQL at ${redactUrl(pg.serverUrl)})` : '') +
      `, ${opts.connections} connections, ${opts.durationS} s, ` +
      `${opts.bodyBytes} B bodies; scenarios ${opts.scenarios.join(',')}` +
      (opts.scenarios.includes('backlog') ? `, backlog ${opts.backlog}` : '') +
      (opts.scenarios.includes('scale') ? `, scale ${opts.scale}` : '') +
      `; app on ${app.url}`,
  );
  const scenarios = await runAll(b);
  let replicas;
  if (opts.replicas !== null) {
    b.store = 'postgres';
    replicas = await runReplicas(b, opts.replicas);
    checkReplicas(b, replicas);
  }
  const { out, ...options } = opts;
  const results: Results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    options: { ...options, databaseUrl: redactUrl(options.databaseUrl) },
    machine: machine(),
    scenarios,
    targets: [],
    checks: b.checks,
    ok: b.checks.every((c) => c.ok),
    ...(replicas ? { replicas } : {}),
  };
  results.targets = storeTargets(results);
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${table(results)}\n`);
  b.progress(`results written to ${out}`);
  return results.ok;
}

function start(): void {
  let opts: BenchOptions | null;
  try {
    opts = parseOptions(process.argv.slice(2), process.env['POSTERN_TEST_DATABASE_URL']);
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (!opts) {
    process.stdout.write(USAGE);
    return;
  }
  const kids = new Children();
  const pg =
    opts.store === 'embedded' && opts.replicas === null
      ? null
      : new BenchDatabases(opts.databaseUrl);
  const deadline = Date.now() + opts.timeoutS * 1000;
  let aborting = false;
  const abort = (why: string, code: number) => {
    if (aborting) return;
    aborting = true;
    process.stderr.write(`bench: ${why}; stopping every process it started\n`);
    kids.killAllNow();
    // The relays are gone: drop their databases, but never wait long for the server.
    const dropped = pg ? pg.dropAll().catch(() => undefined) : Promise.resolve();
    const giveUp = new Promise((r) => setTimeout(r, 5_000).unref());
    void Promise.race([dropped, giveUp]).then(() => process.exit(code));
  };
  const hardTimeout = setTimeout(
    () => abort(`over the ${opts.timeoutS} s limit`, 1),
    opts.timeoutS * 1000,
  );
  process.on('SIGINT', () => abort('interrupted', 130));
  process.on('SIGTERM', () => abort('terminated', 143));
  process.on('exit', () => kids.killAllNow());
  main(opts, kids, pg, deadline)
    .then(
      (ok) => {
        if (!ok) process.stderr.write('bench: some checks failed (see "checks" in the results)\n');
        process.exitCode = ok ? 0 : 1;
      },
      (err: unknown) => {
        process.stderr.write(
          `bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
        );
        process.exitCode = 1;
      },
    )
    .then(() => kids.cleanup())
    .then(() => pg?.dropAll())
    .catch((err: unknown) => {
      process.stderr.write(`bench: cleaning up failed: ${String(err)}\n`);
      kids.killAllNow();
      process.exitCode = 1;
    })
    .finally(() => clearTimeout(hardTimeout));
}

start();
