/**
 * What the ingress path answers with. Ingress shares the relay's origin with the dashboard,
 * whose page holds the admin token, so nothing an outside sender or an internal app controls
 * may run there: every ingress answer is sandboxed (no scripts, an opaque origin) and never
 * sniffed, and the headers of an app's answer that act on the whole origin are dropped.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { withoutHopByHop } from '../../shared/http.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

/** Sent with every ingress answer, replacing any the app set. */
export const INGRESS_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  // `sandbox` without `allow-scripts`: a page served here runs no script and gets an opaque
  // origin, so it can read neither the dashboard's storage nor its API (CSP 3 §6.3.2.1).
  'content-security-policy': "sandbox; default-src 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
};

/**
 * Headers of an app's answer that are never passed on: those that act on the relay's whole
 * origin or host (cookies, storage, service workers, transport and isolation policies, early
 * hints of other resources), and those the relay sets itself.
 */
const DROPPED = new Set([
  'set-cookie',
  'set-cookie2',
  'clear-site-data',
  'service-worker-allowed',
  'service-worker',
  'content-security-policy',
  'content-security-policy-report-only',
  'x-content-type-options',
  'strict-transport-security',
  'alt-svc',
  'origin-agent-cluster',
  'permissions-policy',
  'feature-policy',
  'cross-origin-opener-policy',
  'cross-origin-embedder-policy',
  'report-to',
  'reporting-endpoints',
  'nel',
  'link',
  'refresh',
  'speculation-rules',
  'content-length',
  'date',
]);

/** Drops CORS grants too: an app's answer is for the provider, not for browsers. */
function dropped(lowerName: string): boolean {
  return DROPPED.has(lowerName) || lowerName.startsWith('access-control-');
}

/** The headers of a sync channel's answer: the app's own, minus the dropped ones, plus ours. */
export function appAnswerHeaders(
  appHeaders: readonly HeaderPair[],
  eventId: string,
): OutgoingHttpHeaders {
  const out: Record<string, string[]> = {};
  for (const [name, value] of withoutHopByHop(appHeaders)) {
    const lower = name.toLowerCase();
    if (!dropped(lower)) (out[lower] ??= []).push(value);
  }
  out['x-postern-event-id'] = [eventId];
  return out;
}

/**
 * A browser fetching a service worker script says so (`Service-Worker: script`); no webhook
 * sender does. Refusing it makes registering a worker from an ingress path impossible.
 */
export function isServiceWorkerFetch(headers: IncomingHttpHeaders): boolean {
  return headers['service-worker'] !== undefined;
}
