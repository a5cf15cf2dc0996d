/**
 * Ingress: `ANY /h/:channelId[/suffix][?query]`. Takes the body under the channel's size
 * limit, verifies the provider's signature, makes the event durable, and only then answers
 * 202 `{id}`. Method, path suffix, query, header values and body bytes are kept exactly.
 *
 * This is the relay's hot path, so it is a plain `node:http` handler in front of the koa app
 * (which serves everything else): per request it saves koa's context, router and middleware.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { isPosternError, PosternError } from '../../shared/errors.ts';
import { pairsFromRaw } from '../../shared/http.ts';
import type { AppendedClaim, EventPayload } from '../store/types.ts';
import { handshakeAnswer, replayKeyOf, verifyRequest, type ReplayKey } from '../verify/index.ts';
import { drain, readBody } from './body.ts';
import { refusalOf } from './channel-rules.ts';
import type { RelayContext } from './context.ts';
import {
  appAnswerHeaders,
  INGRESS_SECURITY_HEADERS,
  isServiceWorkerFetch,
} from './ingress-answers.ts';
import { untransportable } from './ingress-limits.ts';
import { orderKeyOf } from './order-key.ts';
import { ReplayGuard, type Claim } from './replay-guard.ts';

export const INGRESS_PREFIX = '/h/';

/** Splits the raw request target into the channel id, the path suffix after it, and the query. */
export function splitTarget(rawUrl: string): { channelId: string; suffix: string; query: string } {
  const q = rawUrl.indexOf('?');
  const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q + 1);
  const slash = pathname.indexOf('/', INGRESS_PREFIX.length);
  return {
    channelId: pathname.slice(INGRESS_PREFIX.length, slash < 0 ? undefined : slash),
    suffix: slash < 0 ? '' : pathname.slice(slash),
    query,
  };
}

function send(
  res: ServerResponse,
  status: number,
  body: string | Buffer,
  headers: OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8' },
): void {
  res.writeHead(status, {
    ...headers,
    ...INGRESS_SECURITY_HEADERS,
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function sendError(res: ServerResponse, err: PosternError, extra: OutgoingHttpHeaders = {}): void {
  const message = err.expose ? err.message : 'internal error';
  send(res, err.status, JSON.stringify({ error: { code: err.code, message } }), {
    'content-type': 'application/json; charset=utf-8',
    ...extra,
  });
}

/**
 * The channel's bucket in the store, shared by every relay (rule 8 of the store contract), so
 * that several relays do not multiply the limit; a new limit starts a new bucket.
 */
function channelBucket(channelId: string, limit: { perSecond: number; burst: number }): string {
  return `ingress:${channelId}:${limit.perSecond}/${limit.burst}`;
}

/** After a refusal: the rest of the body is read and dropped, or else the connection closes. */
function closeUnlessDrained(req: IncomingMessage): OutgoingHttpHeaders {
  return drain(req) ? {} : { connection: 'close' };
}

export interface IngressDeps {
  /** The ordering key of a verified event (a seam for tests; default `orderKeyOf`). */
  orderKeyOf?: typeof orderKeyOf;
}

export function ingressHandler(relay: RelayContext, deps: IngressDeps = {}) {
  const replays = new ReplayGuard(relay.store, relay.now);
  const keyOf = deps.orderKeyOf ?? orderKeyOf;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const rawUrl = req.url ?? '/';
    const { channelId, suffix, query } = splitTarget(rawUrl);
    let channel = relay.channel(channelId);
    if (!channel) {
      // Maybe created through another relay a moment ago: look once more in the store.
      await relay.control.fresh();
      channel = relay.channel(channelId);
    }
    if (!channel) {
      relay.metrics.ingress.inc({ channel: '', outcome: 'unknown_channel' });
      return sendError(res, new PosternError('ERR_NOT_FOUND', 'no such channel', { status: 404 }));
    }
    if (!relay.accepting()) {
      const err = new PosternError('ERR_SHUTTING_DOWN', 'relay is restarting', {
        status: 503,
        expose: true,
      });
      return sendError(res, err, { 'retry-after': '5' });
    }
    const outcome = (o: string) => relay.metrics.ingress.inc({ channel: channel.name, outcome: o });
    if (isServiceWorkerFetch(req.headers)) {
      outcome('refused');
      const err = new PosternError('ERR_FORBIDDEN', 'service worker scripts are not served here', {
        status: 403,
      });
      return sendError(res, err, closeUnlessDrained(req));
    }
    const originalUrl = `${relay.config.publicUrl}${rawUrl}`;
    const tooMuch = untransportable(req, suffix, query, originalUrl);
    if (tooMuch) {
      outcome('too_large');
      return sendError(res, tooMuch, closeUnlessDrained(req));
    }
    const method = req.method ?? 'GET';
    // Before the body is read: a method or path the channel does not take costs nothing more.
    const refused = refusalOf(channel, method, suffix);
    if (refused) {
      outcome(refused.outcome);
      return sendError(res, refused.error, { ...refused.headers, ...closeUnlessDrained(req) });
    }
    if (channel.rateLimit) {
      const waitMs = await relay.store.takeToken(
        channelBucket(channel.id, channel.rateLimit),
        channel.rateLimit,
        relay.now(),
      );
      if (waitMs > 0) {
        outcome('rate_limited');
        const err = new PosternError(
          'ERR_RATE_LIMITED',
          'channel rate limit exceeded; retry later',
          {
            status: 429,
            expose: true,
          },
        );
        return sendError(res, err, { 'retry-after': String(Math.ceil(waitMs / 1000)) });
      }
    }
    let body: Buffer;
    try {
      body = await readBody(req, channel.maxBodyBytes);
    } catch (err) {
      if (!isPosternError(err)) throw err;
      if (err.status !== 413) return sendError(res, err);
      outcome('too_large');
      return sendError(res, err, closeUnlessDrained(req));
    }
    const headers = pairsFromRaw(req.rawHeaders);
    const receivedAt = relay.now();
    let refusal: string | null = null;
    let replay: ReplayKey | null = null;
    if (channel.verify) {
      const signed = { method, url: originalUrl, headers, body, now: receivedAt };
      const answer = handshakeAnswer(channel.verify, signed);
      if (answer) {
        // The provider checking the endpoint: answered here, never stored or forwarded.
        outcome('handshake');
        return send(res, answer.status, answer.body, { 'content-type': answer.contentType });
      }
      const result = verifyRequest(channel.verify, signed);
      if (!result.ok) {
        outcome('rejected');
        relay.logger.warn(
          { channelId: channel.id, reason: result.reason },
          'webhook refused: verification failed',
        );
        refusal = result.reason;
      } else {
        replay = replayKeyOf(channel.verify, signed);
      }
    }
    const payload: EventPayload = {
      id: relay.nextEventId(),
      channelId: channel.id,
      receivedAt,
      method,
      path: suffix,
      query,
      headers,
      originalUrl,
      remoteAddress: req.socket.remoteAddress ?? '',
      body,
    };
    if (refusal !== null) {
      // Kept as metadata (no body) so an operator can see forged traffic; not awaited: a
      // flood of forgeries must not cost a disk flush each. The store bounds how many stay.
      relay.store
        .appendEvent({
          ...payload,
          body: Buffer.alloc(0),
          rejected: { reason: refusal, size: body.length },
        })
        .catch((err: unknown) => relay.logger.error({ err }, 'could not record a refused webhook'));
      const err = new PosternError('ERR_SIGNATURE', refusal, { status: 401, expose: true });
      return sendError(res, err);
    }
    let claim: Claim | null = null;
    if (replay) {
      claim = await replays.claim(channel.id, replay);
      if (claim.duplicateOf !== undefined) {
        // The same signed request again (a replay, or the provider's own retry): one event.
        outcome('duplicate');
        relay.logger.info(
          { channelId: channel.id, eventId: claim.duplicateOf },
          'webhook already accepted; answered with its event id',
        );
        return send(res, 202, `{"id":"${claim.duplicateOf}"}`);
      }
      payload.dedupKey = replay.key;
    }
    // A sync channel with an agent on this relay or another: the provider's request waits for
    // the app's answer until the channel's deadline, whichever relay delivers the event.
    const sync =
      channel.response.mode === 'sync' &&
      (relay.dispatcher.hasSink(channel.id) || relay.servedElsewhere(channel.id));
    if (sync) payload.respondBy = receivedAt + channel.response.timeoutMs;
    let summary;
    // Room in a session of this relay: the event is claimed as it is stored and sent at once.
    const room = relay.dispatcher.reserve(channel.id);
    let appended: AppendedClaim | null = null;
    try {
      // Only now, for a verified request: a forged body is never parsed for its key.
      const orderKey = keyOf(channel, headers, body);
      if (orderKey !== undefined) payload.orderKey = orderKey;
      const started = performance.now();
      if (room) {
        appended = await relay.store.appendClaimed(payload, room.claim);
        summary = appended.event;
      } else {
        summary = await relay.store.appendEvent(payload);
      }
      relay.metrics.commitSeconds.observe((performance.now() - started) / 1000);
    } catch (err) {
      if (room) relay.dispatcher.cancel(room);
      claim?.release(undefined);
      outcome('store_error');
      relay.logger.error({ err, channelId: channel.id }, 'could not store webhook; answered 503');
      const refused = new PosternError(
        'ERR_STORE_WRITE',
        'could not store the webhook; retry later',
        { status: 503, expose: true },
      );
      return sendError(res, refused, { 'retry-after': '5' });
    }
    claim?.release(summary.id);
    outcome('accepted');
    // Waited for before the event leaves: the delivery then asks the agent for the answer.
    const answered =
      payload.respondBy === undefined
        ? null
        : relay.dispatcher.awaitResponse(summary.id, Math.max(0, payload.respondBy - relay.now()));
    if (room && appended && relay.dispatcher.handOff(room, appended, payload)) {
      relay.metrics.handedOff.inc();
    }
    const answer = await answered;
    if (answer) {
      // The app's own answer, as the provider expects it (Slack commands, TwiML, …).
      const headers = appAnswerHeaders(answer.headers, summary.id);
      return send(res, answer.status, answer.body, headers);
    }
    send(res, 202, `{"id":"${summary.id}"}`);
  };
  return (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      relay.logger.error({ err }, 'ingress failed');
      if (!res.headersSent && isPosternError(err) && err.code === 'ERR_UNAVAILABLE') {
        // The store could not be read (the replay check): nothing was accepted; retry later.
        const refused = new PosternError(
          'ERR_UNAVAILABLE',
          'the store is unavailable; retry later',
          {
            status: 503,
            expose: true,
          },
        );
        sendError(res, refused, { 'retry-after': '5' });
      } else if (!res.headersSent) {
        sendError(res, new PosternError('ERR_STORE_WRITE', 'internal error', { status: 500 }));
      } else {
        res.destroy();
      }
    });
  };
}
