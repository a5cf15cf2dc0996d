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

export function streamHandler(
  relay: RelayContext,
  view: (e: EventSummary) => Record<string, unknown>,
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
    });
    const flush = setInterval(() => {
      if (pending.size === 0) return;
      let text = '';
      for (const e of pending.values())
        text += `event: event\ndata: ${JSON.stringify(view(e))}\n\n`;
      pending.clear();
      out.write(text);
      if (out.writableLength > MAX_BUFFERED) out.end();
    }, FLUSH_MS);
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
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
