/**
 * Ingress: `ANY /h/:channelId[/suffix][?query]`. Takes the body under the channel's size
 * limit, verifies the provider's signature, makes the event durable, and only then answers
 * 202 `{id}`. Method, path suffix, query, header values and body bytes are kept exactly.
 */
import type { Context } from 'koa';
import { PosternError } from '../../shared/errors.ts';
import { pairsFromRaw, withoutHopByHop } from '../../shared/http.ts';
import { handshakeAnswer, verifyRequest } from '../verify/index.ts';
import { readBody } from './body.ts';
import type { RelayContext } from './context.ts';

/** Splits the raw request target into the path suffix after `/h/:id` and the query. */
export function splitTarget(rawUrl: string): { suffix: string; query: string } {
  const q = rawUrl.indexOf('?');
  const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q + 1);
  const slash = pathname.indexOf('/', 3); // after "/h/"
  return { suffix: slash < 0 ? '' : pathname.slice(slash), query };
}

export function ingressHandler(relay: RelayContext) {
  return async (ctx: Context): Promise<void> => {
    const channelId = ctx.params['channelId'] as string;
    const channel = relay.channel(channelId);
    if (!channel) {
      relay.metrics.ingress.inc({ channel: '', outcome: 'unknown_channel' });
      throw new PosternError('ERR_NOT_FOUND', 'no such channel', { status: 404 });
    }
    if (!relay.accepting()) {
      ctx.set('Retry-After', '5');
      throw new PosternError('ERR_SHUTTING_DOWN', 'relay is restarting', {
        status: 503,
        expose: true,
      });
    }
    const outcome = (o: string) => relay.metrics.ingress.inc({ channel: channel.name, outcome: o });
    let body: Buffer;
    try {
      body = await readBody(ctx.req, channel.maxBodyBytes);
    } catch (err) {
      if ((err as PosternError).status === 413) {
        outcome('too_large');
        ctx.set('Connection', 'close');
      }
      throw err;
    }
    const rawUrl = ctx.req.url ?? '/';
    const headers = pairsFromRaw(ctx.req.rawHeaders);
    const receivedAt = relay.now();
    const originalUrl = `${relay.config.publicUrl}${rawUrl}`;
    let refusal: string | null = null;
    if (channel.verify) {
      const signed = { method: ctx.method, url: originalUrl, headers, body, now: receivedAt };
      const answer = handshakeAnswer(channel.verify, signed);
      if (answer) {
        // The provider checking the endpoint: answered here, never stored or forwarded.
        outcome('handshake');
        ctx.status = answer.status;
        ctx.type = answer.contentType;
        ctx.set('X-Content-Type-Options', 'nosniff');
        ctx.body = answer.body;
        return;
      }
      const result = verifyRequest(channel.verify, signed);
      if (!result.ok) {
        outcome('rejected');
        relay.logger.warn(
          { channelId: channel.id, reason: result.reason },
          'webhook refused: verification failed',
        );
        refusal = result.reason;
      }
    }
    const { suffix, query } = splitTarget(rawUrl);
    const payload = {
      id: relay.nextEventId(),
      channelId: channel.id,
      receivedAt,
      method: ctx.method,
      path: suffix,
      query,
      headers,
      originalUrl,
      remoteAddress: ctx.req.socket.remoteAddress ?? '',
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
      ctx.status = 401;
      ctx.body = { error: { code: 'ERR_SIGNATURE', message: refusal } };
      return;
    }
    const started = performance.now();
    let summary;
    try {
      summary = await relay.store.appendEvent(payload);
    } catch (err) {
      outcome('store_error');
      relay.logger.error({ err, channelId: channel.id }, 'could not store webhook; answered 503');
      ctx.set('Retry-After', '5');
      throw new PosternError('ERR_STORE_WRITE', 'could not store the webhook; retry later', {
        status: 503,
        expose: true,
      });
    }
    relay.metrics.commitSeconds.observe((performance.now() - started) / 1000);
    outcome('accepted');
    const sync = channel.response.mode === 'sync' && relay.dispatcher.hasSink(channel.id);
    const response = sync
      ? relay.dispatcher.awaitResponse(summary.id, channel.response.timeoutMs)
      : null;
    relay.dispatcher.enqueue(summary);
    const ack = await response;
    if (ack?.status !== undefined && ack.responseHeaders && ack.body) {
      // The app's own answer, as the provider expects it (Slack commands, TwiML, …).
      ctx.status = ack.status;
      for (const [name, value] of withoutHopByHop(ack.responseHeaders)) {
        if (!SKIPPED_RESPONSE_HEADERS.has(name.toLowerCase())) ctx.append(name, value);
      }
      ctx.set('x-postern-event-id', summary.id);
      ctx.body = Buffer.from(ack.body);
      return;
    }
    ctx.status = 202;
    ctx.body = { id: summary.id };
  };
}

/** Set by the relay's own HTTP layer for the body it sends. */
const SKIPPED_RESPONSE_HEADERS = new Set(['content-length', 'date']);
