/** What the HTTP handlers need from the relay, passed in rather than imported. */
import type { Logger } from 'pino';
import type { AdminTokenCheck } from '../admin-token.ts';
import type { ControlCache } from '../control-cache.ts';
import type { RelayConfig } from '../config.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import type { Metrics } from '../metrics.ts';
import type { ChannelRecord, Store } from '../store/types.ts';
import type { TunnelEndpoint } from '../tunnel/endpoint.ts';

export interface RelayContext {
  /** The config with the public URL resolved. */
  config: RelayConfig & { publicUrl: string };
  store: Store;
  /** The control state as this relay knows it now (see control-cache.ts). */
  control: ControlCache;
  dispatcher: Dispatcher;
  tunnel: TunnelEndpoint;
  admin: AdminTokenCheck;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  nextEventId: () => string;
  /** Whether the relay still takes traffic (false while shutting down). */
  accepting: () => boolean;
  /**
   * Whether an agent granted the channel has a live tunnel on another relay of the store (a
   * sync channel's answer may come from there).
   */
  servedElsewhere: (channelId: string) => boolean;
  /** Whether the agent has a live tunnel on another relay of the store. */
  connectedElsewhere: (agentId: string) => boolean;
  /** A channel by id, or by name when `byName` (admin API only; ingress takes ids). */
  channel: (idOrName: string, byName?: boolean) => ChannelRecord | undefined;
}
