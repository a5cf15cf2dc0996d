/**
 * The dashboard's server side: the page, its lockdown headers and its content-hashed assets,
 * built from the real UI sources with esbuild. (The UI sources type-check under their own
 * tsconfig, in `npm run typecheck`.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import Koa from 'koa';
import pino from 'pino';
import { dashboardRouter } from '../../server/dashboard/router.ts';
import { errorMiddleware } from '../../server/http/errors.ts';

const silent = pino({ level: 'silent' });

async function serve(router: ReturnType<typeof dashboardRouter>): Promise<{
  url: string;
  server: Server;
}> {
  const app = new Koa();
  app.silent = true;
  app.use(errorMiddleware(silent));
  app.use(router.routes());
  app.use(router.allowedMethods());
  const server = createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

let base: string;
let server: Server;

before(async () => {
  ({ url: base, server } = await serve(dashboardRouter(silent)));
});

after(() => close(server));

/** The src/href of each tag of `kind` in the page. */
function refs(html: string, tag: 'script' | 'link', attr: 'src' | 'href'): string[] {
  const re = new RegExp(`<${tag}\\b[^>]*\\b${attr}="([^"]+)"`, 'g');
  return [...html.matchAll(re)].map((m) => m[1]!);
}

test('GET / answers the page with its title and a strict Content-Security-Policy', async () => {
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8/);
  const html = await res.text();
  assert.match(html, /<title>Postern<\/title>/);
  const csp = res.headers.get('content-security-policy') ?? '';
  const directives = csp.split(';').map((d) => d.trim());
  assert.ok(directives.includes("default-src 'self'"), csp);
  assert.ok(directives.includes("script-src 'self'"), csp);
  assert.ok(directives.includes("frame-ancestors 'none'"), csp);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('cache-control'), 'no-cache');
});

test('the page holds no inline script, no event handler attribute and no inline style', async () => {
  const html = await (await fetch(`${base}/`)).text();
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1, 'exactly one script tag');
  for (const [, attrs, body] of scripts) {
    assert.match(attrs!, /\bsrc="/, 'every script is loaded from a URL');
    assert.equal(body!.trim(), '', 'no inline code');
  }
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no onclick= and the like');
  assert.doesNotMatch(html, /\sstyle\s*=|<style\b/i, 'no inline style');
  assert.doesNotMatch(html, /javascript:/i);
});

test('the assets the page references answer 200, typed, content-hashed and cached for good', async () => {
  const html = await (await fetch(`${base}/`)).text();
  const [script] = refs(html, 'script', 'src');
  const links = refs(html, 'link', 'href');
  const expected = [
    { ref: script, ext: 'js', type: 'text/javascript; charset=utf-8' },
    { ref: links.find((l) => l.endsWith('.css')), ext: 'css', type: 'text/css; charset=utf-8' },
    { ref: links.find((l) => l.endsWith('.svg')), ext: 'svg', type: 'image/svg+xml' },
  ];
  for (const { ref, ext, type } of expected) {
    assert.ok(ref, `the page references a .${ext} asset`);
    const m = /^assets\/([0-9a-f]{20})\.(js|css|svg)$/.exec(ref);
    assert.ok(m, `${ref} is assets/<hash>.${ext}`);
    assert.equal(m[2], ext);
    const res = await fetch(new URL(ref, `${base}/`));
    assert.equal(res.status, 200, ref);
    assert.equal(res.headers.get('content-type'), type);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    const body = await res.text();
    assert.ok(body.length > 100, `${ref} has content (${body.length} bytes)`);
    const hash = createHash('sha256').update(body).digest('hex').slice(0, 20);
    assert.equal(m[1], hash, 'the name is the hash of the content');
  }
  // Minified, and the UI is in it (not just Preact).
  const js = await (await fetch(new URL(script!, `${base}/`))).text();
  assert.ok(js.split('\n').length < 20, 'the script is minified');
  assert.ok(js.includes('api/stream'), 'the script reads the live stream');
  assert.ok(!js.includes('sourceMappingURL'), 'no source map reference');
});

test('an unknown asset is 404, and so is a known hash with the wrong extension', async () => {
  const html = await (await fetch(`${base}/`)).text();
  const [script] = refs(html, 'script', 'src');
  const hash = /^assets\/([0-9a-f]+)\.js$/.exec(script!)![1]!;
  for (const p of [
    '/assets/0123456789abcdef0123.js',
    `/assets/${hash}.css`,
    `/assets/${hash}.js.map`,
    '/assets/..%2fpackage.json',
  ]) {
    const res = await fetch(`${base}${p}`);
    assert.equal(res.status, 404, p);
    const body = (await res.json()) as { error?: { code?: string } };
    assert.equal(body.error?.code, 'ERR_NOT_FOUND', p);
  }
});

test('a dashboard that cannot be built answers 503 and is logged, the rest keeps working', async (t) => {
  const logged: string[] = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => void logged.push(line) });
  const broken = await serve(
    dashboardRouter(logger, () => Promise.reject(new Error('esbuild exploded'))),
  );
  t.after(() => close(broken.server));
  const res = await fetch(`${broken.url}/`);
  assert.equal(res.status, 503);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_UNAVAILABLE');
  assert.equal((await fetch(`${broken.url}/assets/x.js`)).status, 404);
  assert.equal(logged.length, 1);
  assert.match(logged[0]!, /esbuild exploded/);
});
