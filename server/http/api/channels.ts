/** `/api/channels`: create, list, show, change and delete channels. */
import type Router from '@koa/router';
import { PosternError } from '../../../shared/errors.ts';
import { applyChannelPatch, channelView, parseNewChannel } from '../../channels.ts';
import { randomId } from '../../ids.ts';
import { readJsonObject } from '../body.ts';
import type { RelayContext } from '../context.ts';
import { channelOr404, notFound } from './common.ts';

export function channelRoutes(router: Router, relay: RelayContext): void {
  router.post('/channels', async (ctx) => {
    const raw = await readJsonObject(ctx.req);
    const channel = parseNewChannel(raw, randomId('ch'), relay.now());
    await relay.control.update((s) => {
      if (s.channels.some((c) => c.name === channel.name)) {
        throw new PosternError('ERR_BAD_REQUEST', `a channel named "${channel.name}" exists`, {
          status: 409,
        });
      }
      s.channels.push(channel);
    });
    relay.logger.info({ channelId: channel.id, name: channel.name }, 'channel created');
    ctx.status = 201;
    ctx.body = channelView(channel, relay.config.publicUrl);
  });

  router.get('/channels', (ctx) => {
    ctx.body = {
      channels: relay.control.state.channels.map((c) => channelView(c, relay.config.publicUrl)),
    };
  });

  router.get('/channels/:id', async (ctx) => {
    const channel = await channelOr404(relay, ctx.params['id']!);
    ctx.body = channelView(channel, relay.config.publicUrl);
  });

  router.patch('/channels/:id', async (ctx) => {
    const id = (await channelOr404(relay, ctx.params['id']!)).id;
    const raw = await readJsonObject(ctx.req);
    let view: Record<string, unknown> = {};
    await relay.control.update((s) => {
      const channel = s.channels.find((c) => c.id === id) ?? notFound('channel');
      applyChannelPatch(channel, raw);
      if (s.channels.some((c) => c.id !== id && c.name === channel.name)) {
        throw new PosternError('ERR_BAD_REQUEST', `a channel named "${channel.name}" exists`, {
          status: 409,
        });
      }
      view = channelView(channel, relay.config.publicUrl);
    });
    // Pending events follow the new settings at once (ordering, keys, retries, response).
    relay.dispatcher.channelChanged(id);
    // Agents route by the names their welcome granted: a new name needs a new welcome, which
    // every relay sees to on the control change (server/control-changes.ts).
    ctx.body = view;
  });

  router.delete('/channels/:id', async (ctx) => {
    const id = (await channelOr404(relay, ctx.params['id']!)).id;
    await relay.control.update((s) => {
      s.channels = s.channels.filter((c) => c.id !== id);
      for (const a of s.agents) a.channels = a.channels.filter((c) => c !== id);
    });
    relay.dispatcher.forgetChannel(id);
    relay.logger.info({ channelId: id }, 'channel deleted');
    ctx.status = 204;
  });
}
