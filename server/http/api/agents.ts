/** `/api/agents`: add (with a pairing code), change grants, pair again, list, revoke. */
import type Router from '@koa/router';
import { readString } from '../../../shared/fields.ts';
import { randomId } from '../../ids.ts';
import { hashPairingCode, newPairingCode } from '../../pairing.ts';
import type { AgentRecord } from '../../store/types.ts';
import { readJsonObject } from '../body.ts';
import type { RelayContext } from '../context.ts';
import { agentOr404, fail, iso, notFound } from './common.ts';

export function agentRoutes(router: Router, relay: RelayContext): void {
  const agentView = (a: AgentRecord) => ({
    id: a.id,
    name: a.name,
    channels: a.channels,
    paired: a.publicKey !== null,
    // Connected through this relay or another of the same store.
    connected: relay.tunnel.isConnected(a.id) || relay.connectedElsewhere(a.id),
    inFlight: relay.tunnel.inFlight(a.id),
    createdAt: iso(a.createdAt),
    lastSeenAt:
      relay.tunnel.isConnected(a.id) || relay.connectedElsewhere(a.id)
        ? iso(relay.now())
        : iso(a.lastSeenAt),
    version: a.version,
  });

  /** The `channels` field of an agent request: ids or names of existing channels, as ids. */
  const grantedChannels = (raw: Record<string, unknown>): string[] => {
    if (!Array.isArray(raw['channels']) || raw['channels'].length === 0) {
      fail('channels', 'a non-empty list of channel ids or names');
    }
    const ids = (raw['channels'] as unknown[]).map((c, i) => {
      const channel = typeof c === 'string' ? relay.channel(c, true) : undefined;
      if (!channel) return fail(`channels[${i}]`, 'the id or name of an existing channel');
      return channel.id;
    });
    return [...new Set(ids)];
  };

  /** A fresh one-time code for an agent (a new agent, or one to pair again). */
  const issuePairingCode = async (agent: AgentRecord, isNew: boolean) => {
    const now = relay.now();
    const code = newPairingCode();
    const expiresAt = now + relay.config.pairingTtlMs;
    await relay.control.update((s) => {
      if (isNew) s.agents.push(agent);
      s.pairings = s.pairings.filter((p) => p.expiresAt > now && p.agentId !== agent.id);
      s.pairings.push({ codeHash: hashPairingCode(code), agentId: agent.id, expiresAt });
    });
    return { pairingCode: code, expiresAt: iso(expiresAt), relayUrl: relay.config.publicUrl };
  };

  router.post('/agents', async (ctx) => {
    const raw = await readJsonObject(ctx.req);
    const name = readString(raw, 'name', fail, { min: 1, max: 64 });
    const channels = grantedChannels(raw);
    const now = relay.now();
    const agent: AgentRecord = {
      id: randomId('ag'),
      name,
      channels,
      publicKey: null,
      createdAt: now,
      pairedAt: null,
      lastSeenAt: null,
      version: null,
    };
    const pairing = await issuePairingCode(agent, true);
    relay.logger.info({ agentId: agent.id, name }, 'agent added; waiting for pairing');
    ctx.status = 201;
    ctx.body = { ...agentView(agent), ...pairing };
  });

  // Changes the channels an agent is granted; its live sessions, on every relay, reconnect with
  // the new grants (server/control-changes.ts).
  router.patch('/agents/:id', async (ctx) => {
    const id = ctx.params['id']!;
    const raw = await readJsonObject(ctx.req);
    for (const key of Object.keys(raw))
      if (key !== 'channels') fail(key, 'only "channels" can change');
    const channels = grantedChannels(raw);
    let updated: AgentRecord | undefined;
    await relay.control.update((s) => {
      updated = s.agents.find((a) => a.id === id) ?? notFound('agent');
      updated.channels = channels;
    });
    relay.logger.info({ agentId: id, channels }, 'agent channels changed');
    ctx.body = agentView(updated!);
  });

  // A new one-time code for an existing agent (a lost or rebuilt host): pairing again replaces
  // its key, and the old key's tunnels are closed at that moment.
  router.post('/agents/:id/pairing-code', async (ctx) => {
    const agent = await agentOr404(relay, ctx.params['id']!);
    const pairing = await issuePairingCode(agent, false);
    relay.logger.info({ agentId: agent.id }, 'new pairing code issued');
    ctx.status = 201;
    ctx.body = { ...agentView(agent), ...pairing };
  });

  router.get('/agents', (ctx) => {
    ctx.body = { agents: relay.control.state.agents.map(agentView) };
  });

  router.delete('/agents/:id', async (ctx) => {
    const id = ctx.params['id']!;
    await agentOr404(relay, id);
    await relay.control.update((s) => {
      s.agents = s.agents.filter((a) => a.id !== id);
      s.pairings = s.pairings.filter((p) => p.agentId !== id);
    });
    relay.logger.info({ agentId: id }, 'agent revoked');
    ctx.status = 204;
  });
}
