/**
 * Delivery to internal apps: one HTTP attempt per `deliver` frame, over keep-alive connections
 * (undici), to the target the agent's own route names. Redirects are not followed: they count
 * as failures, so the relay can never steer a request elsewhere.
 */
import { Agent as HttpAgent, request, errors } from 'undici';
import type { AgentFrame, HeaderPair, RelayFrame } from '../shared/protocol.ts';
import { MAX_ERROR_CHARS, MAX_RESPONSE_BODY_BYTES } from '../shared/protocol.ts';
import { headerValue, parseRetryAfter, withoutHopByHop } from '../shared/http.ts';
import { standardWebhooksSignature } from '../shared/signing.ts';
import type { Route } from './config.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;
export type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

/**
 * Headers the agent sets itself; copies arriving from the outside are dropped, as is every
 * `x-postern-*` header: the prefix is reserved, so an app can trust what carries it.
 */
const REPLACED = new Set(['host', 'content-length', 'x-forwarded-host', 'x-forwarded-proto']);
const RESERVED_PREFIX = 'x-postern-';
const SIGNATURE_HEADERS = new Set(['webhook-id', 'webhook-timestamp', 'webhook-signature']);

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
      const headers = appHeaders(route, frame, now());
      const res = await request(url, {
        method: frame.method,
        headers: headers.flat(),
        body: frame.body.length > 0 ? frame.body : null,
        dispatcher: this.#http,
        // Deadlines for the app's answer; cheaper per request than an AbortSignal timer.
        headersTimeout: route.timeoutMs,
        bodyTimeout: route.timeoutMs,
      });
      const status = res.statusCode;
      const ack: AckFrame = {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'failed',
        status,
        durationMs: 0,
      };
      if (frame.wantResponse) {
        const body = Buffer.from(await res.body.arrayBuffer());
        if (body.length <= MAX_RESPONSE_BODY_BYTES) {
          ack.responseHeaders = withoutHopByHop(rawPairs(res.headers));
          ack.body = body;
        }
      } else {
        await res.body.dump({ limit: 1024 * 1024 });
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
          const header = res.headers['retry-after'];
          const retryAfterMs = parseRetryAfter(Array.isArray(header) ? header[0] : header, now());
          if (retryAfterMs !== undefined) ack.retryAfterMs = retryAfterMs;
        }
      }
      return ack;
    } catch (err) {
      return {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'failed',
        durationMs: duration(),
        error: describe(err, route.timeoutMs),
      };
    }
  }

  close(): Promise<void> {
    return this.#http.close();
  }
}

function rawPairs(headers: Record<string, string | string[] | undefined>): HeaderPair[] {
  const pairs: HeaderPair[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  }
  return pairs;
}
