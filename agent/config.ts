/**
 * The agent's config file (YAML; JSON is valid YAML), parsed once into a frozen object. Every
 * error names the file, the field and what was expected. Routes live here and only here: the
 * relay names a channel, never a URL.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError } from '../shared/errors.ts';
import {
  isObject,
  readBoolean,
  readOptionalInt,
  readOptionalString,
  readString,
  type Fail,
} from '../shared/fields.ts';

/** What a route takes: every header and JSON field listed must match (values: any of a list). */
export interface Match {
  /** Header name (lower case) → accepted values. */
  readonly headers: ReadonlyMap<string, readonly string[]>;
  /** Dotted path into the JSON body → accepted values. */
  readonly json: ReadonlyMap<string, readonly (string | number | boolean)[]>;
}

export interface Route {
  /**
   * Stable name of the route, reported to the relay so that a retry of a fanned-out event
   * goes only to the routes that did not get it. Default: `<channel>#<n>` (n-th route of
   * that channel in the file); give names when several agents share a channel.
   */
  readonly name: string;
  /** A channel id (`ch_…`) or name the agent is granted. */
  readonly channel: string;
  /** Null: every event of the channel. */
  readonly match: Match | null;
  /** Most requests in flight to this route's app at once. Null: no limit but the window. */
  readonly concurrency: number | null;
  /** Base URL of the internal app; the event's path suffix and query are appended. */
  readonly target: URL;
  readonly timeoutMs: number;
  /** When set, requests carry Standard Webhooks signatures made with this secret. */
  readonly signingSecret: string | null;
  /**
   * Whether the app's answer (status, headers, body) goes back to the relay when it asks for
   * it (sync channels). False: the relay gets the status only, whatever it asks.
   */
  readonly sync: boolean;
  /**
   * Whether the relay keeps the app's answer of each attempt (headers and the first bytes of
   * the body, bounded) for the dashboard and CLI. Absent: true. False: the status only.
   */
  readonly recordAnswer?: boolean;
}

export interface AgentConfig {
  /** The config file, or null when every route came from `--route` flags. */
  readonly file: string | null;
  /** Where the routes came from, as log lines name it: the file, `--route flags`, or both. */
  readonly source: string;
  readonly routes: readonly Route[];
}

export const DEFAULT_TIMEOUT_MS = 10_000;
/** The relay waits longer than this for an ack before it replaces the session. */
export const MAX_TIMEOUT_MS = 300_000;

const ROUTE_FIELDS = [
  'name',
  'channel',
  'target',
  'match',
  'concurrency',
  'timeoutMs',
  'signingSecret',
  'sync',
  'recordAnswer',
];
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const JSON_PATH = /^[^.\s]{1,64}(\.[^.\s]{1,64}){0,15}$/;

function parseMatch(raw: unknown, f: Fail): Match {
  if (!isObject(raw)) return f('match', 'a mapping with "headers" and/or "json"');
  for (const key of Object.keys(raw)) {
    if (key !== 'headers' && key !== 'json') f(`match.${key}`, 'no such field (headers, json)');
  }
  const headers = new Map<string, string[]>();
  const json = new Map<string, (string | number | boolean)[]>();
  const values = <T>(v: unknown, where: string, ok: (x: unknown) => x is T): T[] => {
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0 || !list.every(ok)) {
      return f(where, 'a value or a list of values');
    }
    return list;
  };
  if (raw['headers'] !== undefined) {
    if (!isObject(raw['headers'])) return f('match.headers', 'a mapping of header name to value');
    for (const [name, v] of Object.entries(raw['headers'])) {
      if (!HEADER_NAME.test(name)) f(`match.headers.${name}`, 'a valid header name');
      const isString = (x: unknown): x is string => typeof x === 'string';
      headers.set(name.toLowerCase(), values(v, `match.headers.${name}`, isString));
    }
  }
  if (raw['json'] !== undefined) {
    if (!isObject(raw['json'])) return f('match.json', 'a mapping of dotted path to value');
    for (const [path, v] of Object.entries(raw['json'])) {
      if (!JSON_PATH.test(path)) f(`match.json.${path}`, 'a dotted path such as data.object.type');
      const isScalar = (x: unknown): x is string | number | boolean =>
        typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean';
      json.set(path, values(v, `match.json.${path}`, isScalar));
    }
  }
  if (headers.size === 0 && json.size === 0) {
    return f('match', 'at least one header or JSON field to match');
  }
  return Object.freeze({ headers, json });
}

/** `whsec_` + canonical base64 of 16–64 bytes: a mistyped secret must not become another key. */
function isSigningSecret(value: string): boolean {
  if (!value.startsWith('whsec_')) return false;
  const text = value.slice('whsec_'.length);
  const key = Buffer.from(text, 'base64');
  return key.length >= 16 && key.length <= 64 && key.toString('base64') === text;
}

/** One `--route CHANNEL=URL` flag of `run`, as typed. */
export interface RouteFlag {
  readonly channel: string;
  readonly target: string;
  /** The flag's value as typed, for error messages. */
  readonly text: string;
}

/** Reads `--route CHANNEL=URL` (split at the first `=`: channel names and ids have none). */
export function parseRouteFlag(text: string): RouteFlag {
  const at = text.indexOf('=');
  if (at <= 0 || at === text.length - 1) {
    throw new ConfigError(
      `--route "${text}": expected CHANNEL=URL, e.g. --route github=http://127.0.0.1:3000/hooks`,
    );
  }
  return Object.freeze({ channel: text.slice(0, at), target: text.slice(at + 1), text });
}

/** A route to parse: its raw fields, how to fail on it, and how errors name it. */
interface RouteItem {
  raw: unknown;
  f: Fail;
  label: string;
}

/** Parses routes, in order, each with its own error prefix; names are unique across all. */
function parseRoutes(items: readonly RouteItem[]): Route[] {
  const names = new Map<string, string>();
  const perChannel = new Map<string, number>();
  return items.map(({ raw, f, label }): Route => {
    if (!isObject(raw)) return f('(route)', 'a mapping {channel, target, …}');
    for (const key of Object.keys(raw)) {
      if (!ROUTE_FIELDS.includes(key)) f(key, `no such field (${ROUTE_FIELDS.join(', ')})`);
    }
    const channel = readString(raw, 'channel', f, { min: 1, max: 64 });
    const n = perChannel.get(channel) ?? 0;
    perChannel.set(channel, n + 1);
    const name = readOptionalString(raw, 'name', f, { min: 1, max: 128 }) ?? `${channel}#${n}`;
    const earlier = names.get(name);
    if (earlier !== undefined) f('name', `a name no other route has (${earlier} is "${name}")`);
    names.set(name, label);
    const match = raw['match'] === undefined ? null : parseMatch(raw['match'], f);
    const concurrency = readOptionalInt(raw, 'concurrency', f, 1, 10_000) ?? null;
    const targetText = readString(raw, 'target', f, { min: 1, max: 2048 });
    let target: URL;
    try {
      target = new URL(targetText);
    } catch {
      return f('target', `an absolute http(s) URL, got "${targetText}"`);
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      f('target', `an http:// or https:// URL, got "${targetText}"`);
    }
    if (target.search || target.hash || target.username || target.password) {
      f('target', `a URL without query, fragment or credentials, got "${targetText}"`);
    }
    const timeoutMs =
      readOptionalInt(raw, 'timeoutMs', f, 100, MAX_TIMEOUT_MS) ?? DEFAULT_TIMEOUT_MS;
    const signingSecret =
      readOptionalString(raw, 'signingSecret', f, { min: 16, max: 256 }) ?? null;
    if (signingSecret !== null && !isSigningSecret(signingSecret)) {
      f('signingSecret', 'a Standard Webhooks secret: "whsec_" then 16 to 64 bytes in base64');
    }
    const sync = raw['sync'] === undefined ? false : readBoolean(raw, 'sync', f);
    const recordAnswer =
      raw['recordAnswer'] === undefined ? true : readBoolean(raw, 'recordAnswer', f);
    return Object.freeze({
      name,
      channel,
      match,
      concurrency,
      target,
      timeoutMs,
      signingSecret,
      sync,
      recordAnswer,
    });
  });
}

/** Where a config's routes came from, for log lines: the file, the flags, or both. */
function describeSource(file: string | null, flags: readonly RouteFlag[]): string {
  if (file === null) return '--route flags';
  return flags.length === 0 ? file : `${file} and --route flags`;
}

/**
 * Parses a config file's text, then appends the routes of `--route` flags (if any); each
 * error names the file and field, or the flag, and what was expected.
 */
export function parseAgentConfig(
  text: string,
  file: string,
  flags: readonly RouteFlag[] = [],
): AgentConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
    throw new ConfigError(`${file}${where}: not valid YAML: ${e.message.split('\n')[0]}`);
  }
  const root: unknown = doc.toJS();
  const fail = fileFail(file);
  if (!isObject(root)) return fail('')('(top level)', 'a mapping with a "routes" list');
  for (const key of Object.keys(root)) {
    if (key !== 'routes') fail('')(key, 'no such field (the top level has only "routes")');
  }
  const routesRaw = root['routes'];
  if (!Array.isArray(routesRaw) || routesRaw.length === 0) {
    return fail('')('routes', 'a non-empty list of routes ({channel, target})');
  }
  const items = routesRaw.map((raw: unknown, i: number): RouteItem => ({
    raw,
    f: fail(`routes[${i}]`),
    label: `routes[${i}]`,
  }));
  const routes = parseRoutes([...items, ...flagItems(flags)]);
  return Object.freeze({
    file,
    source: describeSource(file, flags),
    routes: Object.freeze(routes),
  });
}

/** A config made of `--route` flags alone, without a file. */
export function configFromFlags(flags: readonly RouteFlag[]): AgentConfig {
  if (flags.length === 0) throw new ConfigError('run needs --config FILE or --route CHANNEL=URL');
  const routes = parseRoutes(flagItems(flags));
  return Object.freeze({
    file: null,
    source: describeSource(null, flags),
    routes: Object.freeze(routes),
  });
}

function fileFail(file: string): (prefix: string) => Fail {
  return (prefix) => (field, expected) => {
    const path = prefix ? `${prefix}.${field}` : field;
    throw new ConfigError(`${file}: ${path}: expected ${expected}`);
  };
}

function flagItems(flags: readonly RouteFlag[]): RouteItem[] {
  return flags.map((flag) => ({
    label: `--route "${flag.text}"`,
    raw: { channel: flag.channel, target: flag.target },
    f: (field, expected) => {
      throw new ConfigError(`--route "${flag.text}": ${field}: expected ${expected}`);
    },
  }));
}

export async function loadAgentConfig(
  file: string,
  flags: readonly RouteFlag[] = [],
): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return parseAgentConfig(text, file, flags);
}
