/**
 * `npm run build`: esbuild bundles of both binaries, and the agent as one executable.
 *
 * - dist/postern-relay.mjs, dist/postern-agent.mjs: ESM bundles for `node`. The relay's store
 *   engine (lmdb) loads a native binary, which cannot be bundled: it is copied, with the
 *   packages it needs at run time, to dist/node_modules, which ships beside the relay bundle;
 * - dist/postern-agent: a Node single executable application (SEA). Node 20 embeds exactly one
 *   CommonJS file, so the agent is bundled a second time as CJS and injected with postject.
 *
 * `--bundles` (the `prepare` script, run by `npm install`) builds the two ESM bundles only, which
 * the package's `bin` commands run; it needs no network.
 *
 * The agent bundle must hold no server code: the build fails if any input comes from server/,
 * koa or lowdb. The relay bundle embeds the dashboard, built here once: it needs neither
 * esbuild nor the UI sources at run time.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, chmod, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type Metafile, type Plugin } from 'esbuild';
import { buildDashboardAssets } from '../server/dashboard/bundle.ts';
import type { DashboardAssets } from '../server/dashboard/types.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * ws loads these native helpers inside a try/catch when present. They are never bundled: each
 * resolves to a module that throws, so ws falls back to its JavaScript code, and no require()
 * of a file on disk is left in the bundle (a single executable could not load one).
 */
const optionalNative: Plugin = {
  name: 'optional-native',
  setup(b) {
    b.onResolve({ filter: /^(bufferutil|utf-8-validate)$/ }, (args) => ({
      path: args.path,
      namespace: 'optional-native',
    }));
    b.onLoad({ filter: /.*/, namespace: 'optional-native' }, (args) => ({
      contents: `throw new Error('${args.path} is not bundled');`,
      loader: 'js',
    }));
  },
};

const ESM_REQUIRE_SHIM =
  "import { createRequire as __postern_createRequire } from 'node:module';\n" +
  'const require = __postern_createRequire(import.meta.url);';

/** Inlines the version string, instead of the whole package.json the source imports. */
function versionInline(version: string): Plugin {
  return {
    name: 'version-inline',
    setup(b) {
      b.onLoad({ filter: /shared[\\/]version\.ts$/ }, () => ({
        contents: `export const VERSION = ${JSON.stringify(version)};`,
        loader: 'ts',
      }));
    },
  };
}

/**
 * Replaces server/dashboard/assets.ts, which builds the dashboard at relay start from source,
 * with the assets built now: the bundle then holds no esbuild and no UI source.
 */
function dashboardInline(assets: DashboardAssets): Plugin {
  return {
    name: 'dashboard-inline',
    setup(b) {
      b.onLoad({ filter: /server[\\/]dashboard[\\/]assets\.ts$/ }, () => ({
        contents:
          `const assets = ${JSON.stringify(assets)};\n` +
          'export function loadDashboardAssets() { return Promise.resolve(assets); }\n',
        loader: 'ts',
      }));
    },
  };
}

function assertDashboardEmbedded(metafile: Metafile, bundle: string): void {
  const inputs = Object.keys(metafile.inputs);
  const bad = inputs.filter((input) =>
    /server\/dashboard\/(ui\/|bundle\.ts)|node_modules\/(esbuild|preact)\//.test(input),
  );
  if (bad.length > 0 || !inputs.some((i) => i.endsWith('server/dashboard/assets.ts'))) {
    throw new Error(`${bundle} does not embed the prebuilt dashboard:\n  ${bad.join('\n  ')}`);
  }
}

const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
};

function common(entry: string): BuildOptions {
  return {
    entryPoints: [path.join(ROOT, entry)],
    bundle: true,
    platform: 'node',
    target: 'node20',
    plugins: [optionalNative, versionInline(version)],
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
  };
}

/** Packages the relay loads from disk at run time (a native binary), not from its bundle. */
const RELAY_EXTERNAL = ['lmdb'];

/**
 * Copies `names` and every package they depend on at run time (dependencies, and the optional
 * ones installed here, such as the native binary for this platform) to dist/node_modules.
 */
async function copyRuntimePackages(names: string[]): Promise<string[]> {
  const copied: string[] = [];
  const queue = [...names];
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    if (copied.includes(name)) continue;
    const from = path.join(ROOT, 'node_modules', name);
    try {
      await stat(from);
    } catch {
      continue; // an optional dependency for another platform
    }
    await cp(from, path.join(DIST, 'node_modules', name), { recursive: true });
    copied.push(name);
    const pkg = JSON.parse(await readFile(path.join(from, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    queue.push(...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies }));
  }
  return copied;
}

function assertNoServerCode(metafile: Metafile, bundle: string): void {
  const bad = Object.keys(metafile.inputs).filter((input) =>
    /(^|\/)server\/|node_modules\/(koa|@koa|lowdb)\//.test(input),
  );
  if (bad.length > 0) {
    throw new Error(`${bundle} contains server code:\n  ${bad.join('\n  ')}`);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });

  const dashboard = await buildDashboardAssets();
  const relayCommon = common('server/main.ts');
  const relay = await build({
    ...relayCommon,
    plugins: [...(relayCommon.plugins ?? []), dashboardInline(dashboard)],
    format: 'esm',
    external: RELAY_EXTERNAL,
    outfile: path.join(DIST, 'postern-relay.mjs'),
    banner: { js: `#!/usr/bin/env node\n${ESM_REQUIRE_SHIM}` },
  });
  assertDashboardEmbedded(relay.metafile!, 'dist/postern-relay.mjs');
  const packages = await copyRuntimePackages(RELAY_EXTERNAL);
  process.stdout.write(
    `built dist/postern-relay.mjs (dashboard embedded) and dist/node_modules (${packages.join(', ')})\n`,
  );

  const agentEsm = await build({
    ...common('agent/main.ts'),
    format: 'esm',
    outfile: path.join(DIST, 'postern-agent.mjs'),
    banner: { js: `#!/usr/bin/env node\n${ESM_REQUIRE_SHIM}` },
  });
  assertNoServerCode(agentEsm.metafile!, 'dist/postern-agent.mjs');
  process.stdout.write('built dist/postern-agent.mjs\n');
  if (process.argv.includes('--bundles')) return;

  const cjs = path.join(DIST, 'postern-agent.cjs');
  const agentCjs = await build({ ...common('agent/main.ts'), format: 'cjs', outfile: cjs });
  assertNoServerCode(agentCjs.metafile!, 'dist/postern-agent.cjs');

  const blob = path.join(DIST, 'postern-agent.blob');
  const seaConfig = path.join(DIST, 'sea-config.json');
  await writeFile(
    seaConfig,
    JSON.stringify({ main: cjs, output: blob, disableExperimentalSEAWarning: true }),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });
  const exe = path.join(DIST, 'postern-agent');
  await copyFile(process.execPath, exe);
  await chmod(exe, 0o755);
  execFileSync(
    path.join(ROOT, 'node_modules', '.bin', 'postject'),
    [exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE],
    { stdio: 'ignore' },
  );
  await Promise.all([rm(blob), rm(seaConfig), rm(cjs)]);
  process.stdout.write(
    `built dist/postern-agent (single executable) in ${Date.now() - started} ms\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`build failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
