#!/usr/bin/env node
// The `postern-relay` command: runs the compiled bundle (dist/postern-relay.mjs, built by
// `npm install` through the `prepare` script, or by `npm run build`). In a checkout installed
// with --ignore-scripts there is none: the TypeScript sources then run through tsx (slower).
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/postern-relay.mjs', import.meta.url);
if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../server/main.ts', import.meta.url).href);
}
