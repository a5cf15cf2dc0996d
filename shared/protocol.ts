/**
 * Tunnel protocol v1: every frame both ends exchange, with the limits beside them.
 *
 * A frame is one binary WebSocket message: a 4-byte big-endian length N, N bytes of UTF-8 JSON
 * (the frame's fields, keyed by `type`), then the raw body bytes, if the frame carries one.
 * Bodies never travel as base64 inside JSON. `codec.ts` encodes and validates.
 */

export const PROTOCOL_VERSION = 1;

/** Largest webhook body a channel may accept (GitHub's own cap); channels may set less. */
export const MAX_BODY_BYTES = 25 * 1024 * 1024;
/** Largest app response carried back in an `ack` (sync channels). */
export const MAX_RESPONSE_BODY_BYTES = 5 * 1024 * 1024;
/** Largest JSON part of a frame. Node limits request headers to 16 KiB, so 256 KiB is ample. */
export const MAX_FRAME_HEADER_BYTES = 256 * 1024;
/** Largest frame the relay sends (`ws` maxPayload on the agent). */
export const MAX_RELAY_FRAME_BYTES = 4 + MAX_FRAME_HEADER_BYTES + MAX_BODY_BYTES;
/** Largest frame an agent sends (`ws` maxPayload on the relay). */
export const MAX_AGENT_FRAME_BYTES = 4 + MAX_FRAME_HEADER_BYTES + MAX_RESPONSE_BODY_BYTES;
/** An agent must send `hello` this soon after the upgrade, or the relay closes. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Longest error text carried in an ack. */
export const MAX_ERROR_CHARS = 1024;
/** Most header pairs in one request or response. */
export const MAX_HEADER_PAIRS = 512;
/**
 * Bounds of a `deliver` frame's request fields. Ingress refuses a webhook past any of them, so
 * that everything the relay stores can travel to an agent.
 */
export const MAX_PATH_CHARS = 16_384;
export const MAX_QUERY_CHARS = 16_384;
export const MAX_ORIGINAL_URL_CHARS = 20_000;
export const MAX_METHOD_CHARS = 32;
export const MAX_REMOTE_ADDRESS_CHARS = 64;
/** Most unacknowledged deliveries the relay may grant one session. */
export const MAX_WINDOW = 4096;
/**
 * Body bytes a session may have unacknowledged, beside its window of events: the window bounds
 * count, this bounds memory. The relay sends a `deliver` only while the bodies it sent and has
 * no ack for total less than this; the agent closes (1002) a relay that sends one beyond it.
 */
export const MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;

/** WebSocket close codes used by Postern beyond RFC 6455's own (1000–1015). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  tooBig: 1009,
  /** The agent speaks a protocol version the relay does not. */
  unsupportedVersion: 4000,
  /** No `hello` in time, or no frame for several heartbeat intervals. */
  timeout: 4001,
  /** The agent was revoked while connected. */
  revoked: 4003,
  /** Deliveries stayed unacknowledged past the deadline: the session is replaced. */
  stalled: 4004,
} as const;

/** One HTTP header as received: name and value, duplicates and order kept. */
export type HeaderPair = [name: string, value: string];

/** A channel the agent is granted, as the relay names it. */
export interface ChannelRef {
  id: string;
  name: string;
}

/** Outcome of one delivery attempt as the agent saw it. */
export type DeliveryOutcome =
  /** The app answered 2xx. */
  | 'delivered'
  /** The app answered non-2xx, timed out, refused the connection, or redirected. */
  | 'failed'
  /** The agent's config has no route for this channel: the event stays queued. */
  | 'no_route'
  /** Routes exist for the channel but none matches this event: done, never retried. */
  | 'filtered';

/**
 * Bounds of the app's answer an attempt keeps (the ack's `response`): the start of the body, and
 * the response headers (each pair counted as name + value + 4 bytes, as on the wire).
 */
export const MAX_ANSWER_BODY_BYTES = 2048;
export const MAX_ANSWER_HEADER_BYTES = 8192;

/**
 * The app's answer to one attempt, as the relay keeps it with the attempt (every attempt where
 * the app answered, unless the route says `recordAnswer: false`). Its body's first bytes travel
 * in the ack's body (see the `ack` frame).
 */
export interface AnswerSummary {
  /** Response headers in order (hop-by-hop removed, cookies redacted), within the bound. */
  headers: HeaderPair[];
  /** Body bytes the agent read. */
  bodyBytes: number;
  /** Something is not here: the body beyond its first bytes, or header pairs past the bound. */
  truncated: boolean;
}

/** Most route names an ack or a deliver frame carries. */
export const MAX_ROUTES = 64;

// ---- agent → relay -------------------------------------------------------------------------

export type AgentFrame =
  /** First frame on a connection: the protocol the agent speaks and its version. */
  | { type: 'hello'; protocol: number; agentVersion: string }
  /**
   * Result of one `deliver`, sent once per `deliver` received (a redelivery too); it frees the
   * delivery's window slot. `responseHeaders` and `body` carry the app's response only when
   * `deliver.wantResponse` is set AND the agent's route says `sync: true`. With `response` and
   * without `responseHeaders`, `body` is exactly the first min(bodyBytes, MAX_ANSWER_BODY_BYTES)
   * bytes of the app's body; with both, `body` is the whole of it (`bodyBytes` long).
   */
  | {
      type: 'ack';
      eventId: string;
      outcome: DeliveryOutcome;
      /** The app's HTTP status, when it answered. */
      status?: number;
      /** Why it failed, in words, when it did. */
      error?: string;
      durationMs: number;
      /** The app's Retry-After, in ms, on 429 or 503. */
      retryAfterMs?: number;
      /**
       * Names of the routes this attempt delivered to (fan-out): a retry skips them. Names
       * come from the agent's config; the relay stores them but never learns a target.
       */
      routes?: string[];
      /** The app's response headers, when the relay asked for the response. */
      responseHeaders?: HeaderPair[];
      /** The app's answer as the attempt keeps it (bounded), when the app answered. */
      response?: AnswerSummary;
      body?: Uint8Array;
    }
  /** Heartbeat; the relay answers with `pong`. */
  | { type: 'ping'; ts: number }
  /** Answer to the relay's `ping`. */
  | { type: 'pong'; ts: number };

// ---- relay → agent -------------------------------------------------------------------------

export type RelayFrame =
  /**
   * Answer to `hello`, sent once: the session, the heartbeat interval, the delivery window and
   * the channels granted. The agent holds the relay to it for the whole connection.
   */
  | {
      type: 'welcome';
      sessionId: string;
      heartbeatMs: number;
      window: number;
      channels: ChannelRef[];
      /**
       * The relay takes the app's answer in acks (`ack.response`). Absent (relays from before
       * it did): the agent sends none, since such a relay refuses an ack body without
       * `responseHeaders`.
       */
      answers?: boolean;
    }
  /**
   * One attempt at one event. The agent picks the target from its own routes. Sent only after
   * `welcome`, for a channel it granted (by `channelId`; the agent goes by the name `welcome`
   * gave it, whatever `channelName` says), while fewer than `window` deliveries and fewer than
   * MAX_INFLIGHT_BYTES body bytes are unacknowledged (each `deliver` counts until the agent
   * sends its `ack`); otherwise the agent closes with 1002 and delivers nothing of it. A
   * `deliver` with a readable `eventId` but another field out of bounds is answered with a
   * `failed` ack (error `deliver frame refused: …`) and the connection stays up.
   */
  | {
      type: 'deliver';
      eventId: string;
      channelId: string;
      channelName: string;
      attempt: number;
      method: string;
      /** Path suffix after `/h/:channelId`: empty, or starting with `/`. */
      path: string;
      /** Query string without `?`, exactly as received; empty when none. */
      query: string;
      headers: HeaderPair[];
      /** The public URL the provider called. */
      originalUrl: string;
      /** The provider's address as the relay saw it. */
      remoteAddress: string;
      receivedAt: number;
      /** Whether the relay waits for the app's response (sync channels). */
      wantResponse: boolean;
      /** Routes an earlier attempt already delivered to: not to be sent again. */
      skipRoutes: string[];
      /**
       * How many times an operator replayed the event: the agent's "already delivered" memory
       * is per (event, replay), so a replay reaches the app again while a redelivery does not.
       */
      replay: number;
      body: Uint8Array;
    }
  /** Heartbeat; the agent answers with `pong`. */
  | { type: 'ping'; ts: number }
  /** Answer to the agent's `ping`. */
  | { type: 'pong'; ts: number }
  /** The relay is going away: reconnect after `reconnectAfterMs`. */
  | { type: 'goaway'; reason: string; reconnectAfterMs: number };

export type AgentFrameType = AgentFrame['type'];
export type RelayFrameType = RelayFrame['type'];
