/**
 * The channel form's state and how it becomes the body of `POST /api/channels` or `PATCH
 * /api/channels/:id`. Secrets are write-only: the form starts with them empty, and an edit sends
 * `verify` (which replaces the whole config, secrets included) only when asked to.
 */
import type { Channel, ChannelFields } from './model.ts';

/** The providers the relay verifies (server/verify/registry.ts), in the form's order. */
export const PROVIDERS = [
  { id: 'github', label: 'GitHub' },
  { id: 'stripe', label: 'Stripe' },
  { id: 'slack', label: 'Slack' },
  { id: 'shopify', label: 'Shopify' },
  { id: 'twilio', label: 'Twilio' },
  { id: 'meta', label: 'Meta (WhatsApp, Messenger, Instagram)' },
  { id: 'standard-webhooks', label: 'Standard Webhooks (Svix, Resend, Clerk, …)' },
  { id: 'hmac', label: 'Any HMAC of the body' },
] as const;

export interface ChannelDraft {
  name: string;
  /** On an edit: replace the verification config (its secrets must then be given again). */
  changeVerify: boolean;
  /** '' for none. */
  provider: string;
  secret: string;
  previousSecret: string;
  verifyToken: string;
  header: string;
  algorithm: string;
  encoding: string;
  prefix: string;
  mode: 'async' | 'sync';
  timeoutMs: string;
  /** Retry delays as text, e.g. "5s, 5m, 30m"; empty for a single attempt. */
  retry: string;
  ordered: boolean;
  keyKind: 'none' | 'header' | 'jsonField';
  keyValue: string;
  /** Empty for no limit. */
  perSecond: string;
  burst: string;
  /** Bytes; larger bodies get 413. */
  maxBodyBytes: string;
  /** "POST, GET"; empty for the default (the provider's methods, or any). */
  methods: string;
  /** "/push, /github/*"; `""` is the empty suffix; empty for any path. */
  paths: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** The relay's default and upper bound (shared/protocol.ts MAX_BODY_BYTES). */
const DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024;
const UNITS: [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];

/** "5s, 5m, 30m, 2h": each delay with the largest unit that divides it. */
export function formatDelays(delays: number[]): string {
  return delays
    .map((ms) => {
      // Hours at most, as the README writes the default schedule (…, 20h, 24h).
      const unit = UNITS.find(([u, size]) => u !== 'd' && ms !== 0 && ms % size === 0) ?? [
        's',
        1000,
      ];
      return `${ms / unit[1]}${unit[0]}`;
    })
    .join(', ');
}

/** Reads "5s, 5m, 1.5h, 250ms" (separated by commas or spaces); throws a sentence on a mistake. */
export function parseDelays(text: string): number[] {
  const items = text.split(/[\s,]+/).filter((t) => t !== '');
  return items.map((item) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|min|h|d)$/.exec(item);
    if (!m) {
      throw new Error(`"${item}" is not a delay: write a number and a unit, e.g. 30s, 5m, 2h`);
    }
    const unit = m[2] === 'min' ? 'm' : m[2];
    const size = UNITS.find(([u]) => u === unit)?.[1] ?? 1;
    return Math.round(Number(m[1]) * size);
  });
}

export function draftOf(c: Channel | null): ChannelDraft {
  const key = c?.orderingKey ?? null;
  return {
    name: c?.name ?? '',
    changeVerify: c === null,
    provider: c?.verify?.provider ?? '',
    secret: '',
    previousSecret: '',
    verifyToken: '',
    header: c?.verify?.header ?? '',
    algorithm: c?.verify?.algorithm ?? 'sha256',
    encoding: c?.verify?.encoding ?? 'hex',
    prefix: c?.verify?.prefix ?? '',
    mode: c?.mode === 'sync' ? 'sync' : 'async',
    timeoutMs: String(c?.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    retry: c ? formatDelays(c.retryDelaysMs ?? []) : '5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h',
    ordered: c?.ordered ?? false,
    keyKind: key === null ? 'none' : 'header' in key ? 'header' : 'jsonField',
    keyValue: key === null ? '' : 'header' in key ? key.header : key.jsonField,
    perSecond: c?.rateLimit ? String(c.rateLimit.perSecond) : '',
    burst: c?.rateLimit ? String(c.rateLimit.burst) : '',
    maxBodyBytes: String(c?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES),
    methods: c?.methods?.join(', ') ?? '',
    paths: c?.paths?.map((p) => (p === '' ? '""' : p)).join(', ') ?? '',
  };
}

function int(text: string, what: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new Error(`${what}: write a whole number`);
  return Number(t);
}

function verifyOf(d: ChannelDraft): Record<string, unknown> | null {
  if (d.provider === '') return null;
  if (d.secret === '') throw new Error('Secret: give the provider’s secret (it is never shown)');
  const v: Record<string, unknown> = { provider: d.provider, secret: d.secret };
  if (d.previousSecret !== '') v['previousSecret'] = d.previousSecret;
  if (d.provider === 'meta') {
    if (d.verifyToken === '') throw new Error('Verify token: Meta channels need one');
    v['verifyToken'] = d.verifyToken;
  }
  if (d.provider === 'hmac') {
    if (d.header.trim() === '')
      throw new Error('Signature header: name the header, e.g. X-Signature');
    v['header'] = d.header.trim();
    v['algorithm'] = d.algorithm;
    v['encoding'] = d.encoding;
    if (d.prefix !== '') v['prefix'] = d.prefix;
  }
  return v;
}

function methodsOf(text: string): string[] | null {
  if (text.trim() === '') return null;
  return text.split(',').map((m) => {
    const method = m.trim().toUpperCase();
    if (!/^[A-Z]{1,16}$/.test(method)) {
      throw new Error(`Methods: "${m.trim()}" is not an HTTP method such as POST`);
    }
    return method;
  });
}

function pathsOf(text: string): string[] | null {
  if (text.trim() === '') return null;
  return text.split(',').map((p) => {
    const path = p.trim();
    return path === '""' ? '' : path;
  });
}

/** Every field the form sets, as the API takes them (`verify` only when it is to change). */
function allFields(d: ChannelDraft): ChannelFields {
  const fields: ChannelFields = {
    name: d.name.trim(),
    response:
      d.mode === 'sync'
        ? { mode: 'sync', timeoutMs: int(d.timeoutMs, 'Sync timeout') }
        : { mode: 'async', timeoutMs: DEFAULT_TIMEOUT_MS },
    retry: { delaysMs: parseDelays(d.retry) },
    ordered: d.ordered,
    orderingKey:
      !d.ordered || d.keyKind === 'none' || d.keyValue.trim() === ''
        ? null
        : d.keyKind === 'header'
          ? { header: d.keyValue.trim() }
          : { jsonField: d.keyValue.trim() },
    rateLimit:
      d.perSecond.trim() === ''
        ? null
        : {
            perSecond: int(d.perSecond, 'Rate limit'),
            burst: d.burst.trim() === '' ? int(d.perSecond, 'Rate limit') : int(d.burst, 'Burst'),
          },
    maxBodyBytes: int(d.maxBodyBytes, 'Largest body'),
    methods: methodsOf(d.methods),
    paths: pathsOf(d.paths),
  };
  if (d.changeVerify) fields['verify'] = verifyOf(d);
  return fields;
}

/**
 * The request body for the draft: all its fields for a new channel; for an edit, only those
 * that differ from `original` (an empty object: nothing to change). Throws a sentence naming
 * the field on a mistake.
 */
export function channelFields(d: ChannelDraft, original: Channel | null): ChannelFields {
  if (d.name.trim() === '') throw new Error('Name: give the channel a name');
  const fields = allFields(d);
  if (original === null) {
    if (fields['verify'] === null) delete fields['verify'];
    return fields;
  }
  const before = allFields({ ...draftOf(original), changeVerify: false });
  // The response timeout of an async channel is not shown: keep it as it was.
  if (d.mode === 'async' && original.mode === 'async') before['response'] = fields['response'];
  const changed: ChannelFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key === 'verify' || JSON.stringify(value) !== JSON.stringify(before[key])) {
      changed[key] = value;
    }
  }
  return changed;
}
