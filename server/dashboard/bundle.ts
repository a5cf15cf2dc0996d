/**
 * Builds the dashboard (server/dashboard/ui, Preact + plain CSS) with esbuild, in memory: one
 * minified script, one stylesheet and the icon, each named by a hash of its content so that
 * browsers may cache them for ever. Used at relay start when running from source, and by
 * `npm run build`, which embeds the result in the relay bundle.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { DashboardAsset, DashboardAssets } from './types.ts';

const UI_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ui');

function asset(ext: 'js' | 'css' | 'svg', contentType: string, body: string): DashboardAsset {
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 20);
  return { path: `assets/${hash}.${ext}`, contentType, body };
}

export async function buildDashboardAssets(): Promise<DashboardAssets> {
  const result = await build({
    entryPoints: [path.join(UI_DIR, 'main.tsx')],
    bundle: true,
    write: false,
    // Nothing is written; esbuild needs an output directory to name the script and the CSS.
    outdir: path.join(UI_DIR, 'out'),
    entryNames: 'dashboard',
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: true,
    charset: 'utf8',
    legalComments: 'none',
    logLevel: 'silent',
  });
  const output = (ext: string): string => {
    const file = result.outputFiles.find((f) => f.path.endsWith(ext));
    if (!file) throw new Error(`the dashboard build produced no ${ext} file`);
    return file.text;
  };
  return {
    script: asset('js', 'text/javascript; charset=utf-8', output('.js')),
    style: asset('css', 'text/css; charset=utf-8', output('.css')),
    icon: asset('svg', 'image/svg+xml', await readFile(path.join(UI_DIR, 'icon.svg'), 'utf8')),
  };
}
