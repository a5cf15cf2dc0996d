/** `POST /api/pair`: an agent trades a one-time code and its public key for its identity. */
import type Router from '@koa/router';
import { PosternError } from '../../../shared/errors.ts';
import { readString } from '../../../shared/fields.ts';
import { findPairing, parsePublicKey } from '../../pairing.ts';
import type { AgentRecord } from '../../store/types.ts';
import { readJsonObject } from '../body.ts';
import { clientAddress } from '../client-address.ts';
import type { RelayContext } from '../context.ts';
import { fail, notFound } from './common.ts';

export function pairRoutes(router: Router, relay: RelayContext): void {
  // Pairing codes are 60 bits and live 15 minutes: at 10 guesses a minute per address, even a
  // million addresses would need ~10^8 years. No global limit, so nobody can lock pairing out.
  // The buckets are the store's, shared by every relay: N relays do not give N times the guesses.
  const pairPerClient = { perSecond: 1 / 6, burst: 10 };

  router.post('/pair', async (ctx) => {
    const wait = await relay.store.takeToken(
      `pair:${clientAddress(ctx.req, relay.config.trustProxy)}`,
      pairPerClient,
      relay.now(),
    );
    if (wait > 0) {
      ctx.set('Retry-After', String(Math.ceil(wait / 1000)));
      throw new PosternError('ERR_RATE_LIMITED', 'too many pairing attempts; wait and retry', {
        status: 429,
      });
    }
    const raw = await readJsonObject(ctx.req);
    const code = readString(raw, 'code', fail, { min: 1, max: 64 });
    const publicKey = parsePublicKey(raw['publicKey']);
    const now = relay.now();
    // Found and burnt inside one control update: updates run one at a time, so of several
    // concurrent pairings with one code exactly one finds it; the others find it gone.
    let agent: AgentRecord | undefined;
    await relay.control.update((s) => {
      const pairing = findPairing(s.pairings, code, now);
      if (!pairing) {
        relay.logger.warn(
          { remote: ctx.req.socket.remoteAddress },
          'pairing refused: unknown, used or expired code',
        );
        throw new PosternError('ERR_PAIRING_CODE', 'pairing code is unknown, used or expired', {
          status: 401,
        });
      }
      s.pairings = s.pairings.filter((p) => p.codeHash !== pairing.codeHash && p.expiresAt > now);
      agent = s.agents.find((a) => a.id === pairing.agentId);
      if (agent) {
        agent.publicKey = publicKey;
        agent.pairedAt = now;
      }
    });
    if (!agent) notFound('agent');
    // A re-paired agent's old key is dead: every relay closes what still uses it, on the
    // control change (server/control-changes.ts).
    relay.logger.info({ agentId: agent.id }, 'agent paired');
    ctx.body = {
      agentId: agent.id,
      name: agent.name,
      relayUrl: relay.config.publicUrl,
      channels: agent.channels
        .map((id) => relay.channel(id))
        .filter((c) => c !== undefined)
        .map((c) => ({ id: c.id, name: c.name })),
    };
  });
}
