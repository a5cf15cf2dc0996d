/**
 * Admin subcommands of the relay binary. Each one is a call to the admin API of a running
 * relay: human tables by default, `--json` for scripts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../shared/errors.ts';
import { isObject, type Obj } from '../../shared/fields.ts';
import { ADMIN_TOKEN_FILE } from '../admin-token.ts';
import { channelOptions } from './channel-options.ts';
import { table } from './table.ts';

export const ADMIN_USAGE = `Admin commands (talk to a running relay):
  channel create NAME [channel options]
  channel update ID|NAME [channel options]
    --verify PROVIDER --secret-file F
                                   github, stripe, slack, shopify, twilio, standard-webhooks,
                                   with the provider's secret read from file F (--secret S also
                                   works, visible in the process list; meta, hmac: use the API)
    --sync-timeout-ms N            sync channel: hold the provider's request up to N ms
    --async                        back to async
    --retry-delays MS,MS,…         the retry schedule
    --ordered | --unordered        --ordering-key header:NAME | json:PATH
    --rate-limit PER_SECOND[/BURST]
    --max-body-bytes N
    --methods M,M,… | default       HTTP methods taken (default: the provider's, or any)
    --paths /a,/b/*,… | any         path suffixes taken ("" item: none; /x/*: a prefix)
  channel list | channel show ID|NAME | channel delete ID|NAME
  agent add NAME --channel ID|NAME [--channel …]   prints a one-time pairing code
  agent update ID --channel ID|NAME [--channel …]  change its channels (it reconnects)
  agent code ID                                    a new one-time code, to pair it again
  agent list | agent revoke ID
  events list [--channel ID|NAME] [--status S] [--limit N] [--before ID]
  events show ID | events replay ID
  events replay --channel ID|NAME [--status failed|delivered] [--since ISO] [--until ISO]
  tail [--channel ID|NAME]                          one line per event as they arrive
    --relay URL        relay to talk to  (POSTERN_RELAY_URL, default http://localhost:8080)
    --token-file FILE  file holding the admin token (POSTERN_ADMIN_TOKEN_FILE); or the token in
                       POSTERN_ADMIN_TOKEN; default <data-dir>/admin-token
    --data-dir DIR     where that default file is (POSTERN_DATA_DIR, default ./data)
    --token TOKEN      the token itself: visible to every local user in the process list
    --json             print JSON instead of tables`;

const OPTIONS = {
  relay: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  verify: { type: 'string' },
  secret: { type: 'string' },
  'secret-file': { type: 'string' },
  ordered: { type: 'boolean' },
  unordered: { type: 'boolean' },
  'ordering-key': { type: 'string' },
  'sync-timeout-ms': { type: 'string' },
  async: { type: 'boolean' },
  'retry-delays': { type: 'string' },
  'rate-limit': { type: 'string' },
  'max-body-bytes': { type: 'string' },
  methods: { type: 'string' },
  paths: { type: 'string' },
  channel: { type: 'string', multiple: true },
  status: { type: 'string' },
  limit: { type: 'string' },
  before: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
} as const;

class Client {
  readonly #base: string;
  readonly #token: string;
  constructor(base: string, token: string) {
    this.#base = base.replace(/\/$/, '');
    this.#token = token;
  }

  /** Opens a streaming GET (Server-Sent Events) and returns a reader of the body's bytes. */
  async stream(path: string): Promise<ReadableStreamDefaultReader<Uint8Array>> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        headers: { authorization: `Bearer ${this.#token}`, accept: 'text/event-stream' },
      });
    } catch {
      throw new ConfigError(
        `cannot reach the relay at ${this.#base}: is it running? (set --relay or POSTERN_RELAY_URL)`,
      );
    }
    if (!res.ok || !res.body) {
      const hint = res.status === 401 ? ' (check --token-file / POSTERN_ADMIN_TOKEN)' : '';
      throw new ConfigError(`the relay refused the event stream: HTTP ${res.status}${hint}`);
    }
    return res.body.getReader();
  }

  async call(method: string, path: string, body?: unknown): Promise<Obj> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch {
      throw new ConfigError(
        `cannot reach the relay at ${this.#base}: is it running? (set --relay or POSTERN_RELAY_URL)`,
      );
    }
    if (res.status === 204) return {};
    const text = await res.text();
    let value: unknown = {};
    try {
      value = text ? JSON.parse(text) : {};
    } catch {
      throw new ConfigError(`the relay answered ${res.status} with something that is not JSON`);
    }
    if (!isObject(value))
      throw new ConfigError(`the relay answered ${res.status} with an unexpected shape`);
    if (!res.ok) {
      const error = isObject(value['error']) ? value['error'] : {};
      const hint = res.status === 401 ? ' (check --token-file / POSTERN_ADMIN_TOKEN)' : '';
      throw new ConfigError(`${String(error['message'] ?? `HTTP ${res.status}`)}${hint}`);
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

const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObject) : []);
const str = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));

function need(value: string | undefined, what: string): string {
  if (!value) throw new ConfigError(`missing ${what}; see --help`);
  return value;
}

export async function runAdminCommand(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: OPTIONS,
    allowPositionals: true,
    strict: true,
  });
  const client = new Client(
    values.relay ?? env['POSTERN_RELAY_URL'] ?? 'http://localhost:8080',
    resolveToken(values, env, (line) => process.stderr.write(line)),
  );
  const out = (human: string, json: unknown): void => {
    process.stdout.write(values.json ? `${JSON.stringify(json, null, 2)}\n` : human);
  };
  const [sub, arg] = positionals;
  const key = `${command} ${sub ?? ''}`.trim();
  const withSecret = () => ({
    ...values,
    secret: resolveChannelSecret(values, (line) => process.stderr.write(line)),
  });
  const enc = encodeURIComponent;

  switch (key) {
    case 'channel create': {
      const body: Obj = { name: need(arg, 'channel NAME'), ...channelOptions(withSecret()) };
      const c = await client.call('POST', '/api/channels', body);
      return out(
        `Created channel ${str(c['name'])} (${str(c['id'])})\nIngress URL: ${str(c['ingressUrl'])}\n`,
        c,
      );
    }
    case 'channel update': {
      const body = channelOptions(withSecret());
      if (Object.keys(body).length === 0)
        throw new ConfigError('channel update needs at least one option; see --help');
      const c = await client.call(
        'PATCH',
        `/api/channels/${enc(need(arg, 'channel ID or NAME'))}`,
        body,
      );
      return out(`Updated channel ${str(c['name'])} (${str(c['id'])})\n`, c);
    }
    case 'channel list': {
      const r = await client.call('GET', '/api/channels');
      const rows = list(r['channels']).map((c) => [
        str(c['id']),
        str(c['name']),
        isObject(c['verify']) ? str(c['verify']['provider']) : 'none',
        isObject(c['response']) ? str(c['response']['mode']) : '-',
        str(c['ingressUrl']),
      ]);
      return out(table(['ID', 'NAME', 'VERIFY', 'MODE', 'INGRESS URL'], rows), r);
    }
    case 'channel show': {
      const c = await client.call('GET', `/api/channels/${enc(need(arg, 'channel ID or NAME'))}`);
      return out(`${JSON.stringify(c, null, 2)}\n`, c);
    }
    case 'channel delete': {
      await client.call('DELETE', `/api/channels/${enc(need(arg, 'channel ID or NAME'))}`);
      return out(`Deleted channel ${arg}\n`, { deleted: arg });
    }
    case 'agent add': {
      const channels = values.channel ?? [];
      if (channels.length === 0)
        throw new ConfigError('agent add needs at least one --channel ID|NAME');
      const a = await client.call('POST', '/api/agents', {
        name: need(arg, 'agent NAME'),
        channels,
      });
      return out(
        `Added agent ${str(a['name'])} (${str(a['id'])}).\n` +
          `One-time pairing code (expires ${str(a['expiresAt'])}): ${str(a['pairingCode'])}\n` +
          `On the agent's host: postern-agent pair --relay ${str(a['relayUrl'])} --code ${str(a['pairingCode'])}\n`,
        a,
      );
    }
    case 'agent update': {
      const channels = values.channel ?? [];
      if (channels.length === 0)
        throw new ConfigError('agent update needs at least one --channel ID|NAME');
      const a = await client.call('PATCH', `/api/agents/${enc(need(arg, 'agent ID'))}`, {
        channels,
      });
      return out(
        `Agent ${str(a['name'])} now has channels ${str((a['channels'] as unknown[]).join(', '))}\n`,
        a,
      );
    }
    case 'agent code': {
      const a = await client.call('POST', `/api/agents/${enc(need(arg, 'agent ID'))}/pairing-code`);
      return out(
        `New one-time pairing code for ${str(a['name'])} (expires ${str(a['expiresAt'])}): ${str(a['pairingCode'])}\n` +
          `On the agent's host: postern-agent pair --relay ${str(a['relayUrl'])} --code ${str(a['pairingCode'])}\n`,
        a,
      );
    }
    case 'agent list': {
      const r = await client.call('GET', '/api/agents');
      const rows = list(r['agents']).map((a) => [
        str(a['id']),
        str(a['name']),
        a['connected'] ? 'yes' : 'no',
        a['paired'] ? 'yes' : 'no',
        str(a['lastSeenAt']),
        str(a['version']),
      ]);
      return out(table(['ID', 'NAME', 'CONNECTED', 'PAIRED', 'LAST SEEN', 'VERSION'], rows), r);
    }
    case 'agent revoke': {
      await client.call('DELETE', `/api/agents/${enc(need(arg, 'agent ID'))}`);
      return out(`Revoked agent ${arg}; its tunnels are closed\n`, { revoked: arg });
    }
    case 'events list': {
      const q = new URLSearchParams();
      if (values.channel?.[0]) q.set('channel', values.channel[0]);
      if (values.status) q.set('status', values.status);
      if (values.limit) q.set('limit', values.limit);
      if (values.before) q.set('before', values.before);
      const r = await client.call('GET', `/api/events?${q}`);
      const rows = list(r['events']).map(eventRow);
      const more = r['next'] ? `(more: --before ${str(r['next'])})\n` : '';
      return out(table(EVENT_COLUMNS, rows) + more, r);
    }
    case 'events show': {
      const e = await client.call('GET', `/api/events/${enc(need(arg, 'event ID'))}`);
      return out(`${JSON.stringify(e, null, 2)}\n`, e);
    }
    case 'events replay': {
      if (arg === undefined) {
        if (!values.channel?.[0] && !values.status) {
          throw new ConfigError(
            'events replay needs an event ID, or a filter: --channel and/or --status',
          );
        }
        const body: Obj = {};
        if (values.channel?.[0]) body['channel'] = values.channel[0];
        if (values.status) body['status'] = values.status;
        if (values.since) body['since'] = values.since;
        if (values.until) body['until'] = values.until;
        const r = await client.call('POST', '/api/events/replay', body);
        return out(`Queued ${str(r['queued'])} events again\n`, r);
      }
      const e = await client.call('POST', `/api/events/${enc(arg)}/replay`);
      return out(`Queued ${str(e['id'])} again\n`, e);
    }
    case 'tail':
      return tail(client, values.channel?.[0], Boolean(values.json));
    default:
      throw new ConfigError(`unknown command "${key}"; run with --help`);
  }
}

const EVENT_COLUMNS = ['ID', 'RECEIVED', 'CHANNEL', 'STATUS', 'ATTEMPTS', 'METHOD', 'PATH', 'SIZE'];

function eventRow(e: Obj): string[] {
  return [
    str(e['id']),
    str(e['receivedAt']),
    str(e['channelId']),
    str(e['status']),
    str(e['attemptCount']),
    str(e['method']),
    `${str(e['path']) === '-' ? '' : str(e['path'])}${e['query'] ? `?${str(e['query'])}` : ''}` ||
      '/',
    str(e['size']),
  ];
}

/**
 * Follows `GET /api/stream` and prints one line per event as it arrives or changes state.
 * Reconnects (after a short pause) when the relay restarts; Ctrl-C stops it.
 */
async function tail(client: Client, channel: string | undefined, json: boolean): Promise<void> {
  const q = channel ? `?channel=${encodeURIComponent(channel)}` : '';
  let announced = false;
  for (;;) {
    try {
      const reader = await client.stream(`/api/stream${q}`);
      if (!announced) process.stderr.write('tailing events live (Ctrl-C to stop)…\n');
      announced = true;
      const decoder = new TextDecoder();
      let buffered = '';
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        buffered += decoder.decode(read.value, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const message = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = message
            .split('\n')
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice(6))
            .join('\n');
          if (!data) continue;
          const e: unknown = JSON.parse(data);
          if (!isObject(e)) continue;
          process.stdout.write(json ? `${JSON.stringify(e)}\n` : `${eventRow(e).join('  ')}\n`);
        }
      }
      process.stderr.write('the relay closed the stream; reconnecting…\n');
    } catch (err) {
      if (err instanceof ConfigError && !announced) throw err;
      process.stderr.write(`stream interrupted (${(err as Error).message}); reconnecting…\n`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
