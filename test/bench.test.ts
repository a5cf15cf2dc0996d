/**
 * `npm run bench -- --quick` runs end to end: it exits 0, its results hold every scenario, and
 * nothing accepted was lost. Speeds are never asserted: they depend on the machine.
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
    for (const scenario of ['direct', 'async', 'sync', 'backlog', 'cpu']) {
      assert.equal(typeof at(results, 'scenarios', scenario), 'object', `scenario ${scenario}`);
    }
    assert.equal(at(results, 'ok'), true, JSON.stringify(at(results, 'checks')));

    const accepted = at(results, 'scenarios', 'async', 'accepted');
    assert.equal(typeof accepted, 'number');
    assert.ok(Number(accepted) > 0, 'the async scenario accepted webhooks');
    assert.equal(at(results, 'scenarios', 'async', 'delivered'), accepted);
    assert.equal(at(results, 'scenarios', 'async', 'lost'), 0);

    assert.equal(at(results, 'scenarios', 'sync', 'relay', 'lost'), 0);

    const size = at(results, 'scenarios', 'backlog', 'size');
    assert.equal(size, 2000, 'the quick backlog is 2,000 webhooks');
    assert.equal(at(results, 'scenarios', 'backlog', 'accepted'), size);
    assert.equal(at(results, 'scenarios', 'backlog', 'drained'), size);
    assert.equal(at(results, 'scenarios', 'backlog', 'lost'), 0);
    assert.equal(at(results, 'scenarios', 'backlog', 'deliveredWhileAway'), 0);

    // The table is printed with a row per scenario.
    for (const label of ['1 direct', '2 async', '3 sync', '4 backlog', '5 CPU']) {
      assert.ok(output.includes(label), `the table has a "${label}" row`);
    }
  },
);
