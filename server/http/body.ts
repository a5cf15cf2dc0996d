/** Reading request bodies with a byte limit enforced before and during streaming. */
import type { IncomingMessage } from 'node:http';
import { PosternError } from '../../shared/errors.ts';
import { isObject, type Obj } from '../../shared/fields.ts';

/**
 * After a 413, the rest of the body is read and dropped (up to this much), so that the client
 * or a proxy in front reads the answer instead of a broken pipe; beyond it, the connection is
 * closed.
 */
export const DRAIN_LIMIT = 32 * 1024 * 1024;

/**
 * Reads and drops what is left of a refused body; closes the connection past DRAIN_LIMIT.
 * Returns false when the declared length is past it already (the caller closes instead).
 */
export function drain(req: IncomingMessage): boolean {
  if (Number(req.headers['content-length'] ?? 0) > DRAIN_LIMIT) return false;
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DRAIN_LIMIT) req.socket.destroy();
  });
  req.resume();
  return true;
}

function tooLarge(limit: number): PosternError {
  return new PosternError('ERR_BODY_TOO_LARGE', `body exceeds ${limit} bytes`, {
    status: 413,
    expose: true,
  });
}

/**
 * Reads the whole body, refusing with 413 as soon as `Content-Length` or the bytes seen so far
 * exceed `limit`: an oversized body is never buffered in full.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(
        new PosternError('ERR_BAD_REQUEST', `request body: ${err.message}`, {
          status: 400,
          cause: err,
        }),
      );
    };
    const onAborted = (): void => onError(new Error('client went away'));
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** Reads a JSON object body (admin API), at most 1 MiB. */
export async function readJsonObject(req: IncomingMessage): Promise<Obj> {
  const body = await readBody(req, 1024 * 1024);
  let value: unknown;
  try {
    value = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw new PosternError('ERR_BAD_REQUEST', 'body is not valid JSON', { status: 400 });
  }
  if (!isObject(value)) {
    throw new PosternError('ERR_BAD_REQUEST', 'body must be a JSON object', { status: 400 });
  }
  return value;
}
