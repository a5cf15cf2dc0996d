/**
 * Delivery to internal apps: one HTTP attempt per `deliver` frame, over keep-alive connections
 * (undici), to the target the agent's own route names. Redirects are not followed: they count
 * as failures, so the relay can never steer a request elsewhere.
 */
import { Agent as HttpAgent, errors, type Dispatcher } from 'undici';
import type { AgentFrame, AnswerSummary, HeaderPair, RelayFrame } from '../shared/protocol.ts';
import {
  MAX_ANSWER_BODY_BYTES,
  MAX_ANSWER_HEADER_BYTES,
  MAX_ERROR_CHARS,
  MAX_RESPONSE_BODY_BYTES,
} from '../shared/protocol.ts';
import { headerPairBytes, headerValue, parseRetryAfter, withoutHopByHop } from '../shared/http.ts';
import { standardWebhooksSignature } from '../shared/signing.ts';
import type { Route } from './config.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;
export type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

/**
 * Headers the agent sets itself; copies arriving from the outside are dropped, as is every
 * `x-postern-*` header: the prefix is reserved, so an app can trust what carries it.
 */
const REPLACED = new Set([
  'host',
  'content-length',
  'x-forwarded-host',
  'x-forwarded-proto',
  // Belongs to the provider's connection: the body is already here, nothing to wait for.
  'expect',
]);
const RESERVED_PREFIX = 'x-postern-';
const SIGNATURE_HEADERS = new Set(['webhook-id', 'webhook-timestamp', 'webhook-signature']);

/** Response headers that carry credentials: the relay keeps them as `[redacted]`. */
const REDACTED_ANSWER_HEADERS = new Set(['set-cookie', 'set-cookie2']);

/**
 * The app's answer as the attempt keeps it: headers in order (hop-by-hop ones removed, cookies
 * redacted) up to MAX_ANSWER_HEADER_BYTES (later pairs are left out), the body's byte count.
 */
export function answerSummary(
  headers: readonly HeaderPair[],
  bodyBytes: number,
  bodyStartBytes: number,
): AnswerSummary {
  const kept: HeaderPair[] = [];
  let bytes = 0;
  let cut = false;
  for (const [name, value] of withoutHopByHop(headers)) {
    const pair: HeaderPair = [
      name,
      REDACTED_ANSWER_HEADERS.has(name.toLowerCase()) ? '[redacted]' : value,
    ];
    const size = headerPairBytes(pair);
    if (cut || bytes + size > MAX_ANSWER_HEADER_BYTES) {
      cut = true;
      continue;
    }
    bytes += size;
    kept.push(pair);
  }
  return { headers: kept, bodyBytes, truncated: cut || bodyBytes > bodyStartBytes };
}

/**
 * The route's target plus the event's path suffix and query. Returns null when the result would
 * leave the target (another origin, or `..` segments climbing above the target's path): the
 * relay chooses no address, not even another path on the same host.
 */
export function targetUrl(route: Route, frame: DeliverFrame): URL | null {
  const base = route.target.href;
  const joined = frame.path === '' ? base : base.replace(/\/$/, '') + frame.path;
  let url: URL;
  try {
    url = new URL(`${joined}${frame.query ? `?${frame.query}` : ''}`);
  } catch {
    return null;
  }
  const prefix = route.target.pathname.replace(/\/$/, '');
  const inside =
    url.pathname === route.target.pathname ||
    url.pathname.startsWith(`${prefix}/`) ||
    prefix === '';
  return url.origin === route.target.origin && inside ? url : null;
}

/** The request headers the app receives (see DESIGN "What the internal app receives"). */
export function appHeaders(route: Route, frame: DeliverFrame, now: number): HeaderPair[] {
  const signing = route.signingSecret !== null;
  const kept = withoutHopByHop(frame.headers).filter(([name]) => {
    const lower = name.toLowerCase();
    return (
      !REPLACED.has(lower) &&
      !lower.startsWith(RESERVED_PREFIX) &&
      lower !== 'x-forwarded-for' &&
      !(signing && SIGNATURE_HEADERS.has(lower))
    );
  });
  const original = new URL(frame.originalUrl);
  const forwardedFor = headerValue(frame.headers, 'x-forwarded-for');
  const headers: HeaderPair[] = [
    ['host', route.target.host],
    ...kept,
    ['x-postern-event-id', frame.eventId],
    ['x-postern-attempt', String(frame.attempt)],
    ['x-postern-channel', frame.channelName],
    ['x-postern-original-url', frame.originalUrl],
    [
      'x-forwarded-for',
      forwardedFor ? `${forwardedFor}, ${frame.remoteAddress}` : frame.remoteAddress,
    ],
    ['x-forwarded-host', headerValue(frame.headers, 'host') ?? original.host],
    ['x-forwarded-proto', original.protocol.replace(':', '')],
  ];
  if (route.signingSecret !== null) {
    const ts = Math.floor(now / 1000);
    headers.push(
      ['webhook-id', frame.eventId],
      ['webhook-timestamp', String(ts)],
      [
        'webhook-signature',
        standardWebhooksSignature(route.signingSecret, frame.eventId, ts, frame.body),
      ],
    );
  }
  return headers;
}

function describe(err: unknown, timeoutMs: number): string {
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
    return `app did not answer within ${timeoutMs} ms`;
  }
  if ((err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError') {
    return `app did not answer within ${timeoutMs} ms`;
  }
  const code = (err as { code?: string }).code;
  if (code === 'ECONNREFUSED') return 'app refused the connection (is it running?)';
  if (code === 'ENOTFOUND') return 'app host name not found';
  const message = (err as Error).message || String(err);
  return (code ? `${code}: ${message}` : message).slice(0, MAX_ERROR_CHARS);
}

/** The app answered (status and headers came) but its body broke off: what did come. */
class BrokenAnswer extends Error {
  constructor(
    readonly reason: unknown,
    readonly status: number,
    readonly headers: HeaderPair[],
    readonly start: Buffer,
    readonly bodyBytes: number,
  ) {
    super('the app’s answer broke off');
  }
}

/** A failed ack for an answer that broke off: its status and, if recorded, what came of it. */
function brokenAck(
  frame: DeliverFrame,
  route: Route,
  broken: BrokenAnswer,
  durationMs: number,
): AckFrame {
  const timedOut = broken.reason instanceof errors.BodyTimeoutError;
  const ack: AckFrame = {
    type: 'ack',
    eventId: frame.eventId,
    outcome: 'failed',
    status: broken.status,
    durationMs,
    error: (timedOut
      ? `app's answer (${broken.status}) did not finish within ${route.timeoutMs} ms (${broken.bodyBytes} body bytes read)`
      : `app's answer (${broken.status}) broke off after ${broken.bodyBytes} body bytes: ${describe(broken.reason, route.timeoutMs)}`
    ).slice(0, MAX_ERROR_CHARS),
  };
  if (route.recordAnswer !== false) {
    const answer = answerSummary(broken.headers, broken.bodyBytes, broken.start.length);
    ack.response = { ...answer, truncated: true };
    ack.body = broken.start;
  }
  return ack;
}

export class Deliverer {
  readonly #http = new HttpAgent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000 });

  /** Makes one attempt and reports it as an `ack` frame. Never throws. */
  async deliver(
    route: Route,
    frame: DeliverFrame,
    now: () => number = Date.now,
  ): Promise<AckFrame> {
    const started = performance.now();
    const duration = () => Math.round(performance.now() - started);
    const url = targetUrl(route, frame);
    if (!url) {
      return {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'failed',
        durationMs: 0,
        error: 'path suffix leaves the route target; not sent',
      };
    }
    try {
      const res = await this.#send(url, {
        method: frame.method,
        headers: appHeaders(route, frame, now()).flat(),
        body: frame.body.length > 0 ? frame.body : null,
        timeoutMs: route.timeoutMs,
        // The relay asks; the route's own config decides whether the app's answer leaves.
        keepBody: frame.wantResponse && route.sync,
      });
      const status = res.status;
      const ack: AckFrame = {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'failed',
        status,
        durationMs: 0,
      };
      if (route.recordAnswer !== false) {
        ack.response = answerSummary(res.headers, res.bodyBytes, res.start.length);
        ack.body = res.start;
      }
      if (res.body) {
        ack.responseHeaders = withoutHopByHop(res.headers);
        ack.body = res.body;
      }
      ack.durationMs = duration();
      if (status >= 200 && status < 300) {
        ack.outcome = 'delivered';
      } else {
        ack.error =
          status >= 300 && status < 400
            ? `app redirected (${status}); redirects are not followed`
            : `app answered ${status}`;
        if (status === 429 || status === 503) {
          const retryAfterMs = parseRetryAfter(headerValue(res.headers, 'retry-after'), now());
          if (retryAfterMs !== undefined) ack.retryAfterMs = retryAfterMs;
        }
      }
      return ack;
    } catch (err) {
      if (err instanceof BrokenAnswer) return brokenAck(frame, route, err, duration());
      return {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'failed',
        durationMs: duration(),
        error: describe(err, route.timeoutMs),
      };
    }
  }

  /**
   * One request through undici's dispatch API: no stream object per response, which matters
   * at thousands of deliveries a second. The body is kept only when asked (sync channels) and
   * only up to MAX_RESPONSE_BODY_BYTES; beyond its first MAX_ANSWER_BODY_BYTES (`start`, kept
   * for the attempt's record), it is otherwise read, counted and dropped. An error after the
   * status came rejects with a BrokenAnswer.
   */
  #send(
    url: URL,
    opts: {
      method: string;
      headers: string[];
      body: Uint8Array | null;
      timeoutMs: number;
      keepBody: boolean;
    },
  ): Promise<{
    status: number;
    headers: HeaderPair[];
    body: Buffer | null;
    start: Buffer;
    bodyBytes: number;
  }> {
    return new Promise((resolve, reject) => {
      let status = 0;
      let headers: HeaderPair[] = [];
      const chunks: Buffer[] = [];
      const startChunks: Buffer[] = [];
      let startBytes = 0;
      let size = 0;
      let keep = opts.keepBody;
      this.#http.dispatch(
        {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: opts.method as Dispatcher.HttpMethod,
          headers: opts.headers,
          body: opts.body,
          // Deadlines for the app's answer; cheaper per request than an AbortSignal timer.
          headersTimeout: opts.timeoutMs,
          bodyTimeout: opts.timeoutMs,
        },
        {
          onConnect() {},
          onHeaders(statusCode, raw) {
            status = statusCode;
            headers = [];
            for (let i = 0; i + 1 < raw.length; i += 2) {
              headers.push([
                raw[i]!.toString('latin1').toLowerCase(),
                raw[i + 1]!.toString('latin1'),
              ]);
            }
            return true;
          },
          onData(chunk) {
            if (startBytes < MAX_ANSWER_BODY_BYTES) {
              const part = chunk.subarray(0, MAX_ANSWER_BODY_BYTES - startBytes);
              // A copy, so that a few bytes kept do not hold the whole chunk.
              startChunks.push(Buffer.from(part));
              startBytes += part.length;
            }
            size += chunk.length;
            if (!keep) return true;
            if (size > MAX_RESPONSE_BODY_BYTES) {
              keep = false;
              chunks.length = 0;
            } else {
              chunks.push(chunk);
            }
            return true;
          },
          onComplete() {
            resolve({
              status,
              headers,
              body: keep ? Buffer.concat(chunks, size) : null,
              start: Buffer.concat(startChunks, startBytes),
              bodyBytes: size,
            });
          },
          onError(err) {
            const start = Buffer.concat(startChunks, startBytes);
            reject(status > 0 ? new BrokenAnswer(err, status, headers, start, size) : err);
          },
        },
      );
    });
  }

  close(): Promise<void> {
    return this.#http.close();
  }
}
