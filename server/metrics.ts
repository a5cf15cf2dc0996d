/** Prometheus metrics of the relay (prom-client), on a registry of its own. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'postern_' });
  return {
    registry,
    ingress: new Counter({
      name: 'postern_ingress_requests_total',
      help: 'Webhooks received, by channel name and outcome',
      labelNames: ['channel', 'outcome'] as const,
      registers: [registry],
    }),
    attempts: new Counter({
      name: 'postern_delivery_attempts_total',
      help: 'Delivery attempts reported by agents, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'postern_delivery_latency_seconds',
      help: 'From receipt at the relay to the app’s 2xx, for delivered events',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 86400],
      registers: [registry],
    }),
    tunnelConnections: new Counter({
      name: 'postern_tunnel_connections_total',
      help: 'Agent tunnel sessions opened (a rise without new agents means reconnects)',
      registers: [registry],
    }),
    agentsConnected: new Gauge({
      name: 'postern_agents_connected',
      help: 'Agents with a live tunnel',
      registers: [registry],
    }),
    events: new Gauge({
      name: 'postern_events',
      help: 'Stored events by status (queued + delivering is the queue depth)',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    connectionsRefused: new Counter({
      name: 'postern_connections_refused_total',
      help: 'Connections closed at once (limit="connections") or requests answered 503 behind --trust-proxy (limit="requests") because one client address held its maximum',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    headTimeouts: new Counter({
      name: 'postern_connections_head_timeout_total',
      help: 'Connections closed because no complete request head arrived within --header-timeout-ms of connecting',
      registers: [registry],
    }),
    handedOff: new Counter({
      name: 'postern_events_handed_off_total',
      help: 'Events sent to an agent as soon as stored, claimed in the same write (the others wait in the queue for a claim)',
      registers: [registry],
    }),
    commitSeconds: new Histogram({
      name: 'postern_store_commit_seconds',
      help: 'Time to make an ingress event durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
