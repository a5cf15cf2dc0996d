/**
 * The internal app of the benchmark, run as its own process by scripts/bench.ts: a plain
 * node:http server on 127.0.0.1:0 that reads each body and answers 200. It counts requests and
 * the distinct `x-postern-event-id`s with the time each was first seen, so the parent can ask
 * how many arrived in a window and when the last of a given set of accepted events arrived.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isRecord, num, serveIpc, strings, type Json } from './ipc.ts';

/** Event id → time it was first received (ms since the epoch). */
let firstSeen = new Map<string, number>();
let requests = 0;
let duplicates = 0;
let withoutId = 0;
/** Events the parent waits for that have not arrived yet. */
let missing = new Set<string>();
let expected = 0;
let firstExpectedAt: number | null = null;
let lastExpectedAt: number | null = null;
/**
 * Per path: the times requests arrived, in order (the replica bench routes each agent to its
 * own path, to see when an agent delivers again). Kept only after `trackPaths`.
 */
let pathTimes: Map<string, number[]> | null = null;

function noteExpected(at: number): void {
  if (firstExpectedAt === null || at < firstExpectedAt) firstExpectedAt = at;
  if (lastExpectedAt === null || at > lastExpectedAt) lastExpectedAt = at;
}

const server = createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    const at = Date.now();
    requests++;
    if (pathTimes) {
      const p = (req.url ?? '').split('?')[0]!;
      const list = pathTimes.get(p) ?? [];
      list.push(at);
      pathTimes.set(p, list);
    }
    const id = req.headers['x-postern-event-id'];
    if (typeof id !== 'string') withoutId++;
    else if (firstSeen.has(id)) duplicates++;
    else {
      firstSeen.set(id, at);
      if (missing.delete(id)) noteExpected(at);
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
});
// Keep idle connections longer than the agent's pool does, so neither side races the other.
server.keepAliveTimeout = 65_000;

function stats(msg: Record<string, unknown>): Json {
  let inWindow = 0;
  const window = msg['window'];
  if (isRecord(window)) {
    const from = num(window, 'from');
    const to = num(window, 'to');
    for (const at of firstSeen.values()) if (at >= from && at <= to) inWindow++;
  }
  return {
    requests,
    unique: firstSeen.size,
    duplicates,
    withoutId,
    expected,
    missing: missing.size,
    firstExpectedAt,
    lastExpectedAt,
    inWindow,
  };
}

const notify = serveIpc((msg) => {
  switch (msg['type']) {
    case 'reset':
      firstSeen = new Map();
      requests = duplicates = withoutId = expected = 0;
      missing = new Set();
      firstExpectedAt = lastExpectedAt = null;
      return stats({});
    case 'expect': {
      const ids = strings(msg, 'ids');
      missing = new Set();
      firstExpectedAt = lastExpectedAt = null;
      expected = ids.length;
      for (const id of ids) {
        const at = firstSeen.get(id);
        if (at === undefined) missing.add(id);
        else noteExpected(at);
      }
      return stats({});
    }
    case 'stats':
      return stats(msg);
    case 'trackPaths':
      pathTimes = new Map();
      return stats({});
    case 'firstAfter': {
      // Per path: the first request at or after `after` (null: none yet).
      const after = num(msg, 'after');
      const out: Record<string, number | null> = {};
      for (const [p, times] of pathTimes ?? []) out[p] = times.find((t) => t >= after) ?? null;
      return { firstAfter: out };
    }
    default:
      throw new Error(`unknown request ${String(msg['type'])}`);
  }
});

server.listen(0, '127.0.0.1', () => {
  notify({ type: 'ready', port: (server.address() as AddressInfo).port });
});
