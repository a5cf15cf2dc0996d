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
  readOptionalInt,
  readOptionalString,
  readString,
  type Fail,
} from '../shared/fields.ts';

export interface Route {
  /** A channel id (`ch_…`) or name the agent is granted. */
  readonly channel: string;
  /** Base URL of the internal app; the event's path suffix and query are appended. */
  readonly target: URL;
  readonly timeoutMs: number;
  /** When set, requests carry Standard Webhooks signatures made with this secret. */
  readonly signingSecret: string | null;
}

export interface AgentConfig {
  readonly file: string;
  readonly routes: readonly Route[];
}

export const DEFAULT_TIMEOUT_MS = 10_000;
/** The relay waits longer than this for an ack before it replaces the session. */
export const MAX_TIMEOUT_MS = 300_000;

/** `whsec_` + canonical base64 of 16–64 bytes: a mistyped secret must not become another key. */
function isSigningSecret(value: string): boolean {
  if (!value.startsWith('whsec_')) return false;
  const text = value.slice('whsec_'.length);
  const key = Buffer.from(text, 'base64');
  return key.length >= 16 && key.length <= 64 && key.toString('base64') === text;
}

export function parseAgentConfig(text: string, file: string): AgentConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
    throw new ConfigError(`${file}${where}: not valid YAML: ${e.message.split('\n')[0]}`);
  }
  const root: unknown = doc.toJS();
  const fail =
    (prefix: string): Fail =>
    (field, expected) => {
      const path = prefix ? `${prefix}.${field}` : field;
      throw new ConfigError(`${file}: ${path}: expected ${expected}`);
    };
  if (!isObject(root)) return fail('')('(top level)', 'a mapping with a "routes" list');
  for (const key of Object.keys(root)) {
    if (key !== 'routes') fail('')(key, 'no such field (the top level has only "routes")');
  }
  const routesRaw = root['routes'];
  if (!Array.isArray(routesRaw) || routesRaw.length === 0) {
    return fail('')('routes', 'a non-empty list of routes ({channel, target})');
  }
  const seen = new Map<string, number>();
  const routes = routesRaw.map((raw: unknown, i: number): Route => {
    const f = fail(`routes[${i}]`);
    if (!isObject(raw))
      return f('(route)', 'a mapping {channel, target, timeoutMs?, signingSecret?}');
    for (const key of Object.keys(raw)) {
      if (!['channel', 'target', 'timeoutMs', 'signingSecret'].includes(key)) {
        f(key, 'no such field (channel, target, timeoutMs, signingSecret)');
      }
    }
    const channel = readString(raw, 'channel', f, { min: 1, max: 64 });
    const earlier = seen.get(channel);
    if (earlier !== undefined)
      f('channel', `a channel without another route (routes[${earlier}] has "${channel}")`);
    seen.set(channel, i);
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
    return Object.freeze({ channel, target, timeoutMs, signingSecret });
  });
  return Object.freeze({ file, routes: Object.freeze(routes) });
}

export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return parseAgentConfig(text, file);
}
