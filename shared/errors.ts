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
  | 'ERR_CONFIG'
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_BAD_REQUEST'
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

/** A configuration file or flag that cannot be used; the message names file, field and expectation. */
export class ConfigError extends PosternError {
  constructor(message: string) {
    super('ERR_CONFIG', message, { status: 400, expose: true });
  }
}

export function isPosternError(err: unknown): err is PosternError {
  return err instanceof PosternError;
}
