/**
 * `GET /api/stream`: Server-Sent Events of event changes, for the dashboard and `tail`.
 * Changes are coalesced per event and flushed every 100 ms, so a busy relay sends one line per
 * event and tick, not one per state change; a client that cannot keep up is cut off (it lists
 * the events again when it reconnects) rather than growing the relay's memory.
 */
import { PassThrough } from 'node:stream';
import type { Context } from 'koa';
import type { EventSummary } from '../store/types.ts';
import { notFound } from './api/common.ts';
import type { RelayContext } from './context.ts';

const FLUSH_MS = 100;
const KEEPALIVE_MS = 15_000;
/** Buffered bytes past which a slow client is disconnected. */
const MAX_BUFFERED = 1024 * 1024;
/** Events changed and not yet sent past which a client is disconnected too. */
const MAX_PENDING = 10_000;

export function streamHandler(
  relay: RelayContext,
  views: (events: readonly EventSummary[]) => Promise<Record<string, unknown>[]>,
) {
  return (ctx: Context): void => {
    const channel = typeof ctx.query['channel'] === 'string' ? ctx.query['channel'] : undefined;
    const channelId = channel === undefined ? undefined : relay.channel(channel, true)?.id;
    if (channel !== undefined && channelId === undefined) notFound('channel');
    const out = new PassThrough();
    const pending = new Map<string, EventSummary>();
    const unsubscribe = relay.store.subscribe((change) => {
      if (change.type !== 'event') return;
      const e = change.event;
      if (channelId === undefined || e.channelId === channelId) pending.set(e.id, e);
      // Views that take long (store reads) must not grow memory either: cut it off.
      if (pending.size > MAX_PENDING && !out.destroyed) out.end();
    });
    // One tick's views at a time (each may read the store): a tick that finds one under way
    // waits for the next, so lines leave in the order of the changes.
    let flushing = false;
    const flush = setInterval(() => {
      if (pending.size === 0 || flushing || out.writableEnded) return;
      const events = [...pending.values()];
      pending.clear();
      flushing = true;
      views(events)
        .then(
          (list) => {
            let text = '';
            for (const v of list) text += `event: event\ndata: ${JSON.stringify(v)}\n\n`;
            // The client may have gone while the views were built.
            if (out.destroyed || out.writableEnded) return;
            out.write(text);
            if (out.writableLength > MAX_BUFFERED) out.end();
          },
          (err: unknown) => {
            relay.logger.warn({ err }, "could not build the stream's event views; closing it");
            if (!out.destroyed) out.end();
          },
        )
        .finally(() => {
          flushing = false;
        });
    }, FLUSH_MS);
    const keepalive = setInterval(() => {
      if (!out.writableEnded) out.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    const stop = () => {
      clearInterval(flush);
      clearInterval(keepalive);
      unsubscribe();
    };
    ctx.req.on('close', stop);
    out.on('close', stop);
    ctx.req.socket.setTimeout(0);
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('X-Accel-Buffering', 'no'); // nginx: do not buffer the stream
    ctx.type = 'text/event-stream';
    ctx.status = 200;
    ctx.body = out;
    out.write(': connected\n\n');
  };
}
