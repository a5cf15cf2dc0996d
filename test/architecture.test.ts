/**
 * The house has three rooms and one direction: server/ and agent/ import shared/ (and
 * packages), never each other; shared/ imports neither. The agent bundle must stay free of
 * server code, which this check guarantees at the source level.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './helpers/processes.ts';

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sources(rel)));
    else if (/\.(ts|tsx|mts)$/.test(entry.name)) out.push(rel);
  }
  return out;
}

const IMPORT =
  /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

async function crossings(room: string, forbidden: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const file of await sources(room)) {
    const text = await readFile(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith('.')) continue;
      const target = path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), spec));
      const top = target.split(path.sep)[0]!;
      if (forbidden.includes(top)) found.push(`${file} imports ${spec}`);
    }
  }
  return found;
}

test('agent/ imports only shared/, never server/', async () => {
  assert.deepEqual(await crossings('agent', ['server', 'test', 'scripts']), []);
});

test('server/ imports only shared/, never agent/', async () => {
  assert.deepEqual(await crossings('server', ['agent', 'test', 'scripts']), []);
});

test('shared/ imports neither end', async () => {
  assert.deepEqual(await crossings('shared', ['agent', 'server', 'test', 'scripts']), []);
});

test('the check itself finds imports when there are some', async () => {
  // Guard against a check that cannot fail: test files do import from test/helpers.
  assert.ok((await crossings('test', ['test'])).length > 0);
});
