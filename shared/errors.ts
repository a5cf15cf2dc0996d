/**
 * Typed errors with stable codes, mapped to HTTP statuses and WebSocket close codes only at
 * the edges. `expose` says whether the message may be shown to a remote client (as in koa).
 */
export type ErrorCode =
  | 'ERR_PROTOCOL_FRAME_TOO_LARGE'
  | 'ERR_PROTOCOL_MALFORMED'
  | 'ERR_PROTOCOL_UNKNOWN_TYPE'
  | 'ERR_PROTOCOL_BAD_FIELD'
  | 'ERR_PROTOCOL_VERSION'
  | 'ERR_PROTOCOL_OUT_OF_ORDER'
  | 'ERR_PROTOCOL_WINDOW_EXCEEDED'
  | 'ERR_PROTOCOL_CHANNEL_NOT_GRANTED'
  | 'ERR_CONFIG'
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_BAD_REQUEST'
  | 'ERR_CONFLICT'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_FORBIDDEN'
  | 'ERR_SIGNATURE'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_HEADERS_TOO_LARGE'
  | 'ERR_URI_TOO_LONG'
  | 'ERR_RATE_LIMITED'
  | 'ERR_PAIRING_CODE'
  | 'ERR_STORE_WRITE'
  | 'ERR_STORE_CORRUPT'
  | 'ERR_DATA_DIR_LOCKED'
  | 'ERR_SECRETS_KEY'
  | 'ERR_SHUTTING_DOWN'
  | 'ERR_UNAVAILABLE';

export class PosternError extends Error {
  readonly code: ErrorCode;
  /** HTTP status when this error reaches an HTTP edge. */
  readonly status: number;
  /** Whether `message` may be sent to a remote peer. */
  readonly expose: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { status?: number; expose?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = opts.status ?? 500;
    this.expose = opts.expose ?? this.status < 500;
  }
}

/** A frame that does not match protocol v1: wrong size, unknown type, missing or bad field. */
export class ProtocolError extends PosternError {
  constructor(code: ErrorCode, message: string) {
    super(code, message, { status: 400, expose: true });
  }
}

/**
 * A `deliver` whose `eventId` is readable but another field is out of bounds (600 headers, say):
 * the peer is not broken, this one event is. It is answered with a failed ack naming `reason`,
 * and the tunnel stays up.
 */
export class DeliverRefusedError extends ProtocolError {
  readonly eventId: string;
  /** The field and the bound it broke, e.g. `headers: expected a list of at most 512 …`. */
  readonly reason: string;
  /** Body bytes the frame carried: they count against the window until the ack is sent. */
  readonly bodyBytes: number;

  constructor(eventId: string, reason: string, bodyBytes: number) {
    super('ERR_PROTOCOL_BAD_FIELD', `deliver.${reason}`);
    this.eventId = eventId;
    this.reason = reason;
    this.bodyBytes = bodyBytes;
  }
}

/** A configuration file or flag that cannot be used; the message names file, field and expectation. */
export class ConfigError extends PosternError {
  constructor(message: string) {
    super('ERR_CONFIG', message, { status: 400, expose: true });
  }
}

export function isPosternError(err: unknown): err is PosternError {
  return err instanceof PosternError;
}
