/**
 * `npm run bench -- --quick` runs end to end: it exits 0, its results hold every scenario, and
 * nothing accepted was lost; and the same for the scale scenario run on its own, and for the
 * relay on PostgreSQL. Speeds are never asserted: they depend on the machine (targets are
 * checked for being reported, not met).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { ROOT, removeDir, tempDir } from './helpers/processes.ts';

let dir: string | undefined;

after(async () => {
  if (dir) await removeDir(dir);
});

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at `keys` inside parsed JSON, or undefined where the path does not exist. */
function at(value: unknown, ...keys: string[]): unknown {
  let v = value;
  for (const key of keys) v = isRecord(v) ? v[key] : undefined;
  return v;
}

function run(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/bench.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-16_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

test(
  'the quick benchmark runs every scenario and loses nothing',
  { timeout: 240_000 },
  async () => {
    dir = await tempDir('postern-bench-test-');
    const out = path.join(dir, 'results.json');
    const { code, output } = await run(['--quick', '--out', out]);
    assert.equal(code, 0, `bench exited ${code}:\n${output}`);

    const results: unknown = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(typeof at(results, 'scenarios', 'direct'), 'object', 'scenario direct');
    for (const scenario of ['async', 'sync', 'backlog', 'cpu']) {
      assert.equal(
        typeof at(results, 'scenarios', 'embedded', scenario),
        'object',
        `scenario ${scenario}`,
      );
    }
    assert.equal(at(results, 'scenarios', 'postgres'), undefined, 'the embedded store only');
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));

    const accepted = at(results, 'scenarios', 'embedded', 'async', 'accepted');
    assert.equal(typeof accepted, 'number');
    assert.ok(Number(accepted) > 0, 'the async scenario accepted webhooks');
    assert.equal(at(results, 'scenarios', 'embedded', 'async', 'delivered'), accepted);
    assert.equal(at(results, 'scenarios', 'embedded', 'async', 'lost'), 0);

    assert.equal(at(results, 'scenarios', 'embedded', 'sync', 'relay', 'lost'), 0);

    const size = at(results, 'scenarios', 'embedded', 'backlog', 'size');
    assert.equal(size, 2000, 'the quick backlog is 2,000 webhooks');
    assert.equal(at(results, 'scenarios', 'embedded', 'backlog', 'accepted'), size);
    assert.equal(at(results, 'scenarios', 'embedded', 'backlog', 'drained'), size);
    assert.equal(at(results, 'scenarios', 'embedded', 'backlog', 'lost'), 0);
    assert.equal(at(results, 'scenarios', 'embedded', 'backlog', 'deliveredWhileAway'), 0);

    // The table is printed with a row per scenario.
    for (const label of ['1 direct', '2 async', '3 sync', '4 backlog', '5 CPU']) {
      assert.ok(output.includes(label), `the table has a "${label}" row`);
    }
  },
);

test(
  'the quick scale scenario runs alone, survives kill -9 and loses nothing',
  { timeout: 240_000 },
  async () => {
    dir ??= await tempDir('postern-bench-test-');
    const out = path.join(dir, 'scale.json');
    const { code, output } = await run(['--quick', '--scenarios', 'scale', '--out', out]);
    assert.equal(code, 0, `bench exited ${code}:\n${output}`);

    const results: unknown = JSON.parse(await readFile(out, 'utf8'));
    const scenarios = at(results, 'scenarios');
    assert.ok(isRecord(scenarios), 'results have scenarios');
    assert.deepEqual(Object.keys(scenarios), ['embedded']);
    const embedded = at(scenarios, 'embedded');
    assert.ok(isRecord(embedded), 'results have the embedded store scenarios');
    assert.deepEqual(Object.keys(embedded), ['scale']);
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));
    const scale = (...keys: string[]) => at(results, 'scenarios', 'embedded', 'scale', ...keys);

    assert.equal(scale('size'), 2000, 'the quick scale is 2,000 webhooks');
    assert.equal(scale('accepted'), 2000);
    assert.equal(scale('deliveredWhileAway'), 0);
    // Queued at the kill: the 2,000 plus what the timed ingest run took in on top of them.
    const queued = Number(scale('queued'));
    assert.equal(queued, 2000 + Number(scale('ingest', 'full', 'accepted')));
    assert.equal(scale('delivered'), queued);
    assert.equal(scale('lost'), 0);
    assert.equal(scale('emptyIngestLost'), 0);

    const marks = scale('memory', 'marks');
    assert.ok(Array.isArray(marks));
    assert.deepEqual(
      marks.map((m) => at(m, 'queued')),
      [200, 1000, 2000],
    );
    for (const which of ['emptySamplesMs', 'fullSamplesMs']) {
      const samples = scale('restart', which);
      assert.ok(Array.isArray(samples) && samples.length === 3, `3 restarts (${which})`);
    }
    for (const status of ['queued', 'delivered']) {
      assert.equal(scale('page', status, 'problem'), null, `pages of ${status} events`);
    }
    const targets = scale('targets');
    assert.ok(Array.isArray(targets) && targets.length === 7, 'seven targets');
    for (const t of targets) {
      const ok = at(t, 'ok');
      assert.ok(ok === true || ok === false || ok === null, JSON.stringify(t));
    }

    assert.ok(output.includes('6 scale 2,000'), 'the table has the scale rows');
    assert.ok(!output.includes('1 direct'), 'no other scenario ran');
  },
);

test(
  'the quick benchmark runs on PostgreSQL, loses nothing and counts the statements',
  { timeout: 120_000 },
  async () => {
    dir ??= await tempDir('postern-bench-test-');
    const out = path.join(dir, 'postgres.json');
    const args = ['--quick', '--store', 'postgres', '--scenarios', 'async,sync', '--duration', '1'];
    const { code, output } = await run([...args, '--out', out]);
    assert.equal(code, 0, `bench exited ${code}:\n${output}`);

    const results: unknown = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));
    const scenarios = at(results, 'scenarios');
    assert.ok(isRecord(scenarios), 'results have scenarios');
    assert.deepEqual(Object.keys(scenarios), ['postgres']);
    const pg = (...keys: string[]) => at(results, 'scenarios', 'postgres', ...keys);

    const accepted = pg('async', 'accepted');
    assert.equal(typeof accepted, 'number');
    assert.ok(Number(accepted) > 0, 'the async scenario accepted webhooks');
    assert.equal(pg('async', 'delivered'), accepted);
    assert.equal(pg('async', 'lost'), 0);
    assert.equal(pg('sync', 'relay', 'lost'), 0);

    // What the relay sent its database was counted, and at least one statement per batch.
    const transactions = Number(pg('async', 'database', 'transactions'));
    assert.ok(transactions > 0, `transactions counted: ${transactions}`);
    assert.equal(pg('async', 'database', 'statementsPerEvent'), transactions / Number(accepted));

    const targets = at(results, 'targets');
    assert.ok(Array.isArray(targets), 'targets listed');
    assert.deepEqual(
      targets.map((t) => at(t, 'name')),
      ['database statements per accepted event, 16 conn (2 async)'],
      'without the embedded store in the run, only the statements target',
    );
    assert.ok(output.includes('PostgreSQL target'), 'the table has the targets');
  },
);

test(
  'with both stores, the async scenario runs in turns too and the rate targets are judged on its pairs',
  { timeout: 180_000 },
  async () => {
    dir ??= await tempDir('postern-bench-test-');
    const out = path.join(dir, 'both.json');
    const args = ['--quick', '--store', 'both', '--scenarios', 'async'];
    args.push('--duration', '1', '--connections', '8');
    const { code, output } = await run([...args, '--out', out]);
    assert.equal(code, 0, `bench exited ${code}:\n${output}`);
    const results: unknown = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));
    const rounds = at(results, 'scenarios', 'paired', 'rounds');
    assert.ok(Array.isArray(rounds));
    assert.deepEqual(
      rounds.map((r) => at(r, 'store')),
      ['embedded', 'postgres', 'postgres', 'embedded', 'embedded', 'postgres'],
    );
    for (const r of rounds) {
      assert.ok(Number(at(r, 'accepted')) > 0, 'each round accepted webhooks');
      assert.equal(at(r, 'lost'), 0);
    }
    const ratios = at(results, 'scenarios', 'paired', 'ingestRatios');
    assert.ok(Array.isArray(ratios) && ratios.length === 3, 'one ratio per pair');
    const sorted = [...(ratios as number[])].sort((a, b) => a - b);
    assert.equal(at(results, 'scenarios', 'paired', 'ingestMedian'), sorted[1]);
    const targets = at(results, 'targets');
    assert.ok(Array.isArray(targets));
    assert.deepEqual(targets.map((t) => at(t, 'name')).slice(0, 2), [
      'ingest, accepted/s (2 paired)',
      'delivered end to end, delivered/s (2 paired)',
    ]);
    assert.ok(output.includes('2 paired, 1 s rounds'), 'the table shows the rounds');
  },
);

test(
  'the quick replica scenario: 1 relay then 3 on one database, a relay killed, nothing lost',
  { timeout: 240_000 },
  async () => {
    dir ??= await tempDir('postern-bench-test-');
    const out = path.join(dir, 'replicas.json');
    const args = ['--quick', '--replicas', '3', '--duration', '1'];
    const { code, output } = await run([...args, '--out', out]);
    assert.equal(code, 0, `bench exited ${code}:\n${output}`);

    const results: unknown = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));
    assert.deepEqual(at(results, 'scenarios'), {}, 'no other scenario ran');
    const r = (...keys: string[]) => at(results, 'replicas', ...keys);
    for (const run of ['one', 'many']) {
      const accepted = Number(r(run, 'accepted'));
      assert.ok(accepted > 0, `${run}: webhooks accepted`);
      assert.equal(r(run, 'delivered'), accepted);
      assert.equal(r(run, 'lost'), 0);
      assert.ok(Number(r(run, 'statementsPerDelivered')) > 0, `${run}: statements counted`);
    }
    assert.equal(r('one', 'replicas'), 1);
    assert.equal(r('many', 'replicas'), 3);
    const placement = r('many', 'placement');
    assert.ok(Array.isArray(placement) && placement.length === 3, 'agents counted per relay');
    assert.equal(
      placement.reduce((a: number, b) => a + Number(b), 0),
      6,
      'six agents, each on one relay',
    );
    const resume = r('failover', 'resumeMs');
    assert.ok(Array.isArray(resume) && resume.length > 0, "the killed relay's agents moved");
    assert.equal(r('failover', 'lost'), 0);
    assert.equal(r('failover', 'delivered'), r('failover', 'accepted'));
    assert.ok(output.includes('kill -9 → its agents deliver again'), 'the table has the failover');
  },
);
