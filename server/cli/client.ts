/**
 * The admin CLI's side of the admin API: a client that turns transport failures into one line
 * saying what to do, and where the admin token and channel secrets come from.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { readHttpUrl } from '../../shared/cli.ts';
import { ConfigError } from '../../shared/errors.ts';
import { isObject, type Obj } from '../../shared/fields.ts';
import { ADMIN_TOKEN_FILE } from '../admin-token.ts';

/** Why a request failed, in a few words (the error's code: refused, unknown host, …). */
function unreachable(base: string, err: unknown): ConfigError {
  const code = (err as { code?: unknown }).code;
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? 'unknown host'
        : code === 'ETIMEDOUT'
          ? 'no answer'
          : typeof code === 'string'
            ? code
            : (err as Error).message;
  return new ConfigError(
    `cannot reach the relay at ${base} (${why}): is it running? Start it with "serve", or point --relay / POSTERN_RELAY_URL at it`,
  );
}

/** The most of an answer the CLI reads: an event's body (25 MiB at most) in base64, and more. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** How long a call waits for the relay's answer. */
const CALL_TIMEOUT_MS = 30_000;

/**
 * A client of the admin API over node:http (not fetch: loading fetch costs a command about
 * 0.2 s of start-up, and a CLI call should answer in well under a second).
 */
export class Client {
  readonly #base: URL;
  readonly #shown: string;
  readonly #token: string;
  constructor(base: string, token: string) {
    this.#shown = readHttpUrl('--relay / POSTERN_RELAY_URL', base).replace(/\/$/, '');
    this.#base = new URL(this.#shown);
    this.#token = token;
  }

  #request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    timeoutMs: number,
  ): Promise<IncomingMessage> {
    const url = new URL(this.#base.pathname.replace(/\/$/, '') + path, this.#base);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...headers,
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
        },
      });
      req.once('response', resolve);
      req.once('error', (err) => reject(unreachable(this.#shown, err)));
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () =>
          req.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })),
        );
      }
      req.end(body);
    });
  }

  /** Opens a streaming GET (Server-Sent Events): the body's chunks as they arrive. */
  async stream(path: string): Promise<AsyncIterable<Buffer>> {
    const res = await this.#request('GET', path, { accept: 'text/event-stream' }, undefined, 0);
    if (res.statusCode !== 200) {
      res.resume();
      const hint = res.statusCode === 401 ? ' (check --token-file / POSTERN_ADMIN_TOKEN)' : '';
      throw new ConfigError(`the relay refused the event stream: HTTP ${res.statusCode}${hint}`);
    }
    return res;
  }

  async call(method: string, path: string, body?: unknown): Promise<Obj> {
    const json = body === undefined ? undefined : JSON.stringify(body);
    const res = await this.#request(
      method,
      path,
      json === undefined ? {} : { 'content-type': 'application/json' },
      json,
      CALL_TIMEOUT_MS,
    );
    const status = res.statusCode ?? 0;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          res.destroy();
          throw new ConfigError(`the relay's answer is over ${MAX_ANSWER_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw unreachable(this.#shown, err);
    }
    if (status === 204) return {};
    const text = Buffer.concat(chunks).toString('utf8');
    let value: unknown = {};
    try {
      value = text ? JSON.parse(text) : {};
    } catch {
      throw new ConfigError(
        `the relay answered ${status} with something that is not JSON: is ${this.#shown} a Postern relay?`,
      );
    }
    if (!isObject(value))
      throw new ConfigError(`the relay answered ${status} with an unexpected shape`);
    if (status < 200 || status >= 300) {
      const error = isObject(value['error']) ? value['error'] : {};
      const hint = status === 401 ? ' (check --token-file / POSTERN_ADMIN_TOKEN)' : '';
      throw new ConfigError(`${String(error['message'] ?? `HTTP ${status}`)}${hint}`);
    }
    return value;
  }
}

/** A secret kept in a file (first line; surrounding whitespace dropped). */
function readSecretFile(file: string, source: string, what = 'the admin token'): string {
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(
      `cannot read ${what} from ${file} (${source}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  if (!secret) throw new ConfigError(`${file} (${source}) is empty: expected ${what}`);
  return secret;
}

const readTokenFile = (file: string, source: string) => readSecretFile(file, source);

/**
 * A channel's verification secret, from --secret-file or --secret. Like the admin token, a
 * secret on the command line is readable by every local user: it works, with a warning.
 */
export function resolveChannelSecret(
  values: { secret?: string | undefined; 'secret-file'?: string | undefined },
  warn: (line: string) => void,
): string | undefined {
  if (values.secret !== undefined && values['secret-file'] !== undefined) {
    throw new ConfigError('--secret and --secret-file are both given: keep --secret-file');
  }
  if (values['secret-file'] !== undefined) {
    return readSecretFile(values['secret-file'], '--secret-file', "the provider's secret");
  }
  if (values.secret !== undefined) {
    warn(
      'postern-relay: warning: --secret is visible to other local users in the process list; use --secret-file FILE instead\n',
    );
  }
  return values.secret;
}

/**
 * The admin token, from (first found) --token-file, --token, POSTERN_ADMIN_TOKEN_FILE,
 * POSTERN_ADMIN_TOKEN, or `<data-dir>/admin-token`. A token on the command line is in
 * /proc/<pid>/cmdline, which every local user can read: it still works, with a warning.
 */
export function resolveToken(
  values: { token?: string | undefined; 'token-file'?: string | undefined; 'data-dir'?: string },
  env: NodeJS.ProcessEnv,
  warn: (line: string) => void,
): string {
  if (values.token !== undefined && values['token-file'] !== undefined) {
    throw new ConfigError('--token and --token-file are both given: keep --token-file');
  }
  if (values['token-file'] !== undefined) {
    return readTokenFile(values['token-file'], '--token-file');
  }
  if (values.token !== undefined) {
    warn(
      'postern-relay: warning: --token is visible to other local users in the process list; use --token-file FILE or POSTERN_ADMIN_TOKEN instead\n',
    );
    if (!values.token) throw new ConfigError('--token is empty');
    return values.token;
  }
  const fileFromEnv = env['POSTERN_ADMIN_TOKEN_FILE'] || undefined;
  const fromEnv = env['POSTERN_ADMIN_TOKEN'] || undefined;
  if (fileFromEnv !== undefined && fromEnv !== undefined) {
    throw new ConfigError(
      'POSTERN_ADMIN_TOKEN_FILE and POSTERN_ADMIN_TOKEN are both set: keep one',
    );
  }
  if (fileFromEnv !== undefined) return readTokenFile(fileFromEnv, 'POSTERN_ADMIN_TOKEN_FILE');
  if (fromEnv !== undefined) return fromEnv;
  const dataDir = values['data-dir'] ?? (env['POSTERN_DATA_DIR'] || './data');
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  try {
    return readTokenFile(file, 'the default, <data-dir>/admin-token');
  } catch (err) {
    throw new ConfigError(
      `no admin token: pass --token-file FILE, set POSTERN_ADMIN_TOKEN_FILE or POSTERN_ADMIN_TOKEN, ` +
        `or point --data-dir at the relay's data dir (${(err as Error).message})`,
    );
  }
}
