/**
 * Ingress in process, on a real store and a real socket: the order of its checks. A forged
 * request is refused before its body is parsed for an ordering key (a spy stands in for
 * `orderKeyOf`); a method or path the channel does not take is refused before the body is
 * read; a replay is answered without a second parse or a second event; and a request whose
 * store write failed does not hold its replay key.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { parseNewChannel } from '../../server/channels.ts';
import { parseRelayConfig } from '../../server/config.ts';
import { Dispatcher } from '../../server/dispatch/dispatcher.ts';
import type { RelayContext } from '../../server/http/context.ts';
import { ingressHandler } from '../../server/http/ingress.ts';
import { orderKeyOf } from '../../server/http/order-key.ts';
import { eventIdGenerator } from '../../server/ids.ts';
import { createMetrics } from '../../server/metrics.ts';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { ControlCache } from '../../server/control-cache.ts';
import type { EventPayload, EventSummary } from '../../server/store/types.ts';
import { AgentTokenVerifier } from '../../server/tunnel/auth.ts';
import { TunnelEndpoint } from '../../server/tunnel/endpoint.ts';

const SECRET = 'gh-secret';
const CHANNEL_ID = 'ch_0123456789abcdefghjkmnpqrs';

/** The embedded store, with appends that can be made to fail. */
class FlakyStore extends EmbeddedStore {
  failNext = 0;
  override appendEvent(payload: EventPayload): Promise<EventSummary> {
    if (this.failNext > 0 && !payload.rejected) {
      this.failNext--;
      return Promise.reject(new Error('disk full'));
    }
    return super.appendEvent(payload);
  }
}

interface Harness {
  url: string;
  store: FlakyStore;
  /** The bodies the ordering key was computed for. */
  keyed: Buffer[];
  outcomes(): Promise<Record<string, number>>;
}

async function harness(t: TestContext, channel: Record<string, unknown>): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-ingress-'));
  const store = new FlakyStore({ dataDir });
  await store.open();
  await store.updateControl((s) => {
    s.channels.push(parseNewChannel({ name: 'c', ...channel }, CHANNEL_ID, Date.now()));
  });
  const logger = pino({ level: 'silent' });
  const control = new ControlCache(store, () => undefined);
  await control.load();
  const byId = (id: string) => control.state.channels.find((c) => c.id === id);
  const dispatcher = new Dispatcher({ store, logger, channel: byId });
  dispatcher.start();
  const tunnel = new TunnelEndpoint({
    verifier: new AgentTokenVerifier({
      audience: 'http://127.0.0.1',
      agent: () => undefined,
      used: () => [],
      recordUsed: () => Promise.resolve(),
    }),
    dispatcher,
    logger,
    heartbeatMs: 10_000,
    window: 8,
    ackTimeoutMs: 30_000,
    agent: () => undefined,
    channel: byId,
    onConnect: () => undefined,
    onDisconnect: () => undefined,
  });
  const metrics = createMetrics();
  const keyed: Buffer[] = [];
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ctx: RelayContext = {
    config: { ...parseRelayConfig({ dataDir }), publicUrl: url },
    store,
    control,
    dispatcher,
    tunnel,
    admin: { accepts: () => false, writtenTo: null },
    metrics,
    logger,
    now: Date.now,
    nextEventId: eventIdGenerator(),
    accepting: () => true,
    servedElsewhere: () => false,
    connectedElsewhere: () => false,
    channel: byId,
  };
  server.on(
    'request',
    ingressHandler(ctx, {
      orderKeyOf: (c, headers, body) => {
        keyed.push(body);
        return orderKeyOf(c, headers, body);
      },
    }),
  );
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    dispatcher.stop();
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return {
    url: `${url}/h/${CHANNEL_ID}`,
    store,
    keyed,
    async outcomes() {
      const counts: Record<string, number> = {};
      for (const v of (await metrics.ingress.get()).values) {
        counts[String(v.labels['outcome'])] = v.value;
      }
      return counts;
    },
  };
}

function sign(body: string): string {
  return `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
}

async function send(
  url: string,
  body: string,
  signature: string,
  method = 'POST',
): Promise<{ status: number; json: Record<string, unknown>; allow: string | null }> {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
    body,
  });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, json, allow: res.headers.get('allow') };
}

/** Sends a request target exactly as given (fetch would resolve its dot segments first). */
function sendRaw(url: string, target: string, body: string, signature: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path: target,
        method: 'POST',
        headers: { 'x-hub-signature-256': signature },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const ORDERED = {
  verify: { provider: 'github', secret: SECRET },
  ordered: true,
  orderingKey: { jsonField: 'repository.full_name' },
};

test('a forged request is refused before its body is parsed for an ordering key', async (t) => {
  const h = await harness(t, ORDERED);
  const forged = (i: number) => `{"repository":{"full_name":"octo/forged-${i}"}}`;
  for (let i = 0; i < 3; i++) {
    const res = await send(h.url, forged(i), sign('something else'));
    assert.equal(res.status, 401);
    assert.equal((res.json['error'] as Record<string, unknown>)['code'], 'ERR_SIGNATURE');
  }
  assert.equal(h.keyed.length, 0, 'no ordering key was computed for a forged request');
  const body = '{"repository":{"full_name":"octo/app"},"after":"a1"}';
  const ok = await send(h.url, body, sign(body));
  assert.equal(ok.status, 202);
  assert.equal(h.keyed.length, 1);
  assert.equal(h.keyed[0]!.toString(), body);
  const events = (await h.store.listEvents({ limit: 10 })).events;
  assert.deepEqual(
    events.map((e) => [e.status, e.orderKey]),
    [
      ['queued', 'octo/app'],
      ['rejected', ''],
      ['rejected', ''],
      ['rejected', ''],
    ],
  );
  assert.deepEqual(await h.outcomes(), { rejected: 3, accepted: 1 });
});

test('a replay is answered with the first id, without a second parse or event', async (t) => {
  const h = await harness(t, ORDERED);
  const body = '{"repository":{"full_name":"octo/app"}}';
  const first = await send(h.url, body, sign(body));
  const again = await send(h.url, body, sign(body));
  assert.equal(first.status, 202);
  assert.equal(again.status, 202);
  assert.equal(again.json['id'], first.json['id']);
  assert.equal(h.keyed.length, 1, 'the replay was not parsed');
  assert.equal((await h.store.listEvents({ limit: 10 })).events.length, 1);
  assert.deepEqual(await h.outcomes(), { accepted: 1, duplicate: 1 });
});

test('a method or a path the channel does not take: refused, nothing stored', async (t) => {
  const h = await harness(t, { verify: { provider: 'github', secret: SECRET }, paths: ['/push'] });
  const body = '{"a":1}';
  const put = await send(`${h.url}/push`, body, sign(body), 'PUT');
  assert.equal(put.status, 405);
  assert.equal(put.allow, 'POST');
  assert.deepEqual(put.json, {
    error: { code: 'ERR_METHOD_NOT_ALLOWED', message: 'method PUT not allowed on this channel' },
  });
  const elsewhere = await send(`${h.url}/admin/reindex?force=true`, body, sign(body));
  assert.equal(elsewhere.status, 404);
  assert.deepEqual(elsewhere.json, {
    error: { code: 'ERR_NOT_FOUND', message: 'path not allowed on this channel' },
  });
  for (const target of ['/push/../admin', '/push/%2e%2e/admin']) {
    const status = await sendRaw(h.url, `/h/${CHANNEL_ID}${target}`, body, sign(body));
    assert.equal(status, 404, `${target}: a dot segment does not climb out of an allowed path`);
  }
  assert.equal((await h.store.listEvents({ limit: 10 })).events.length, 0);
  assert.equal(h.keyed.length, 0);
  assert.deepEqual(await h.outcomes(), { method_not_allowed: 1, path_not_allowed: 3 });
  const ok = await send(`${h.url}/push`, body, sign(body));
  assert.equal(ok.status, 202);
});

test('a request whose store write failed does not hold its key: the retry is stored', async (t) => {
  const h = await harness(t, { verify: { provider: 'github', secret: SECRET } });
  const body = '{"a":1}';
  h.store.failNext = 1;
  const failed = await send(h.url, body, sign(body));
  assert.equal(failed.status, 503);
  const retried = await send(h.url, body, sign(body));
  assert.equal(retried.status, 202);
  const events = (await h.store.listEvents({ limit: 10 })).events;
  assert.deepEqual(
    events.map((e) => e.id),
    [retried.json['id']],
  );
  const replayed = await send(h.url, body, sign(body));
  assert.equal(replayed.json['id'], retried.json['id']);
  assert.deepEqual(await h.outcomes(), { store_error: 1, accepted: 1, duplicate: 1 });
});
