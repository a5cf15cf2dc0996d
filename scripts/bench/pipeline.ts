/**
 * A relay on the bench's current store with an async and a sync channel, and an agent paired
 * for both and connected, delivering to the bench's app: what scenarios 2, 3 and 5 (and the
 * paired rounds) send their load through.
 */
import type { Bench } from './context.ts';
import {
  createChannel,
  pairAgent,
  startAgent,
  startRelay,
  stopRelay,
  writeAgentConfig,
  type Relay,
} from './postern.ts';

/** The sync channel's deadline: the app answers long before it. */
const SYNC_TIMEOUT_MS = 5_000;

export interface Pipeline {
  relay: Relay;
  /** Ingress URLs of the async and the sync channel. */
  ingress: string;
  syncIngress: string;
  agentPid: number;
  stop(): Promise<void>;
}

export async function startPipeline(b: Bench): Promise<Pipeline> {
  const { kids } = b;
  const relay = await startRelay(kids, b.databases);
  const channel = await createChannel(relay, { name: 'bench' });
  const syncChannel = await createChannel(relay, {
    name: 'bench-sync',
    response: { mode: 'sync', timeoutMs: SYNC_TIMEOUT_MS },
  });
  const { stateDir } = await pairAgent(kids, relay, 'bench-agent', [channel.id, syncChannel.id]);
  const config = await writeAgentConfig(stateDir, [
    { channel: channel.name, target: `${b.app.url}/` },
    { channel: syncChannel.name, target: `${b.app.url}/`, sync: true },
  ]);
  const agent = await startAgent(kids, stateDir, config);
  b.progress(
    `relay on ${relay.url} (pid ${relay.proc.pid}, ${b.store} store), ` +
      `agent connected (pid ${agent.proc.pid})`,
  );
  return {
    relay,
    ingress: channel.ingress,
    syncIngress: syncChannel.ingress,
    agentPid: agent.proc.pid,
    async stop() {
      await kids.stop(agent.proc.child);
      await stopRelay(kids, relay);
    },
  };
}
