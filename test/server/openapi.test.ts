/**
 * docs/openapi.json describes the admin API the router holds, no more and no less; the relay
 * serves its exact bytes; and the validator the e2e tests use catches what it must.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { apiRouter } from '../../server/http/api.ts';
import { OPENAPI_BYTES } from '../../server/http/api/openapi.ts';
import type { RelayContext } from '../../server/http/context.ts';
import {
  assertSupported,
  checkAnswer,
  loadOpenApi,
  matchPath,
  OPENAPI_FILE,
  validate,
} from '../helpers/openapi.ts';

const doc = loadOpenApi();
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** `METHOD /api/path/{param}` for every route of the admin API's router. */
function routerRoutes(): string[] {
  // Registering routes reads nothing of the relay: handlers only use it when called.
  const router = apiRouter({} as RelayContext);
  return router.stack.flatMap((layer) =>
    layer.methods
      .filter((m) => m !== 'HEAD') // the router adds HEAD to each GET
      .map((m) => `${m} ${String(layer.path).replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`),
  );
}

function documentRoutes(): string[] {
  return Object.entries(doc.paths).flatMap(([p, item]) =>
    Object.keys(item)
      .filter((k) => METHODS.includes(k))
      .map((m) => `${m.toUpperCase()} ${p}`),
  );
}

test('the document lists exactly the routes of the admin API router', () => {
  const routes = routerRoutes();
  assert.ok(routes.length >= 17, `the router holds ${routes.length} routes`);
  assert.equal(new Set(routes).size, routes.length, 'a route registered twice');
  const documented = new Set(documentRoutes());
  const missing = routes.filter((r) => !documented.has(r));
  const extra = [...documented].filter((r) => !routes.includes(r));
  assert.deepEqual(missing, [], 'routes the OpenAPI document lacks');
  assert.deepEqual(extra, [], 'operations in the OpenAPI document that no route serves');
});

test("the document's version is the package's", () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  assert.equal(doc.info.version, pkg.version);
});

test('the relay serves the same bytes as docs/openapi.json', () => {
  assert.ok(
    readFileSync(OPENAPI_FILE).equals(OPENAPI_BYTES),
    'docs/openapi.json must be written as JSON.stringify(doc, null, 2) plus a newline; rewrite it ' +
      "with: node -e \"const f='docs/openapi.json',fs=require('fs');" +
      "fs.writeFileSync(f,JSON.stringify(JSON.parse(fs.readFileSync(f,'utf8')),null,2)+'\\n')\"",
  );
});

test('the document is OpenAPI 3.1, every reference resolves, every schema is checkable', () => {
  assert.match(doc.openapi, /^3\.1\.\d+$/);
  const operationIds = new Set<string>();
  const text = readFileSync(OPENAPI_FILE, 'utf8');
  for (const m of text.matchAll(
    /"\$ref": "#\/components\/(schemas|responses)\/([A-Za-z0-9_]+)"/g,
  )) {
    const table = m[1] === 'schemas' ? doc.components.schemas : doc.components.responses;
    assert.ok(table[m[2]!] !== undefined, `unresolved ${m[0]}`);
  }
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    assert.doesNotThrow(() => assertSupported(schema, name));
  }
  for (const m of text.matchAll(/"schema": (\{[^{}]*\})/g)) {
    assert.doesNotThrow(() => assertSupported(JSON.parse(m[1]!)), m[1]);
  }
  for (const [p, item] of Object.entries(doc.paths)) {
    const params = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    const shared = JSON.stringify(item['parameters'] ?? []);
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      const o = op as { operationId: string; parameters?: unknown; responses: object };
      assert.ok(!operationIds.has(o.operationId), `operationId ${o.operationId} twice`);
      operationIds.add(o.operationId);
      const declared = shared + JSON.stringify(o.parameters ?? []);
      for (const name of params) {
        assert.ok(declared.includes(`"name":"${name}"`), `${method} ${p}: parameter ${name}`);
      }
      assert.ok(Object.keys(o.responses).length > 0, `${method} ${p}: no responses`);
    }
  }
});

test('path templates match literal paths before parameters', () => {
  assert.equal(matchPath(doc, '/api/events/replay'), '/api/events/replay');
  assert.equal(matchPath(doc, '/api/events/evt_1/replay'), '/api/events/{id}/replay');
  assert.equal(matchPath(doc, '/api/events/evt_1'), '/api/events/{id}');
  assert.equal(matchPath(doc, '/api/events/'), undefined);
  assert.equal(matchPath(doc, '/api/nothing'), undefined);
});

/** An event as the shared shapes have it: waiting, an attempt's response and replay. */
const event = {
  id: 'evt_1',
  channelId: 'ch_1',
  status: 'queued',
  receivedAt: '2026-01-01T00:00:00.000Z',
  method: 'POST',
  path: '/push',
  query: '',
  size: 2,
  attemptCount: 1,
  nextAttemptAt: '2026-01-01T00:00:05.000Z',
  waiting: {
    reason: 'retry',
    message: 'waiting for a retry at 00:00:05 after: app answered 500',
    retryAt: 1767225605000,
    lastError: 'app answered 500',
  },
  attempts: [
    {
      at: '2026-01-01T00:00:01.000Z',
      agentId: 'ag_1',
      outcome: 'failed',
      status: 500,
      durationMs: 3,
      error: 'app answered 500',
      response: {
        headers: [['content-type', 'text/plain']],
        body: 'b29wcw==',
        bodyBytes: 4,
        truncated: false,
      },
      replay: 1,
    },
  ],
};

test('an event with every shared optional shape is valid; each kind of break is caught', () => {
  const ok = (v: unknown) => checkAnswer(doc, 'GET', '/api/events?limit=5', 200, JSON.stringify(v));
  ok({ events: [event], next: null });
  const broken = (mutate: (e: any) => void, expected: RegExp) => {
    const e = structuredClone(event) as any;
    mutate(e);
    assert.throws(() => ok({ events: [e], next: null }), expected);
  };
  broken((e) => (e.status = 'lost'), /\$\.events\[0\]\.status: expected one of/);
  broken((e) => delete e.method, /missing "method"/);
  broken((e) => (e.colour = 'red'), /unexpected field "colour"/);
  broken((e) => (e.size = '2'), /\.size: expected integer/);
  broken((e) => (e.receivedAt = 'yesterday'), /not an RFC 3339 date-time/);
  broken((e) => (e.waiting.reason = 'bored'), /\.waiting\.reason/);
  broken((e) => delete e.waiting.message, /\.waiting: missing "message"/);
  broken((e) => (e.attempts[0].response.headers = [['a']]), /fewer than 2 items/);
  broken((e) => (e.attempts[0].response.bodyBytes = -1), /-1 < 0/);
  broken((e) => (e.attempts[0].replay = 0), /\.replay: 0 < 1/);
  broken((e) => (e.status = 'delivered'), /\.status: expected one of \["queued","delivering"\]/);
  broken((e) => (e.reason = 'signature_mismatch'), /\.status: expected "rejected"/);
});

test('answers are checked by operation and status', () => {
  const error = JSON.stringify({ error: { code: 'ERR_NOT_FOUND', message: 'no such channel' } });
  checkAnswer(doc, 'GET', '/api/channels/nope', 404, error);
  checkAnswer(doc, 'DELETE', '/api/channels/ch_1', 204, '');
  assert.throws(() => checkAnswer(doc, 'DELETE', '/api/channels/ch_1', 204, '{}'), /a body/);
  assert.throws(() => checkAnswer(doc, 'GET', '/api/channels/x', 418, error), /status not in/);
  assert.throws(() => checkAnswer(doc, 'PUT', '/api/channels/x', 200, '{}'), /no such operation/);
  assert.throws(() => checkAnswer(doc, 'GET', '/api/nope', 200, '{}'), /no such path/);
  assert.throws(
    () => checkAnswer(doc, 'GET', '/api/channels/x', 404, '{"error":{"code":"ERR_NOT_FOUND"}}'),
    /missing "message"/,
  );
});

test('a schema keyword the validator does not know is refused, not ignored', () => {
  assert.throws(
    () => assertSupported({ properties: { a: { unevaluatedProperties: false } } }),
    /\$\.a/,
  );
  assert.throws(() => assertSupported({ items: { format: 'email' } }), /not supported/);
  assert.throws(
    () => validate(doc, { type: 'object', dependentRequired: {} }, {}),
    /not supported/,
  );
  assert.throws(() => validate(doc, { type: 'string', format: 'email' }, 'a'), /not supported/);
});
