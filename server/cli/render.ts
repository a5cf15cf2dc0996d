/**
 * How the admin CLI shows events to a person: one row per event in lists and `tail`, and
 * `events show` with the request's headers as a table, its body decoded (pretty JSON, text, or
 * a hex dump), why it waits, and each attempt with the app's answer. Input is the admin API's
 * JSON, read defensively: a field a relay does not send is left out, never guessed.
 */
import { isObject, type Obj } from '../../shared/fields.ts';
import { table } from './table.ts';

export const str = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));
export const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObject) : []);

/** Channel and agent names by id, to show names where the API gives ids. */
export type Names = Map<string, string>;

const named = (names: Names, id: unknown): string =>
  typeof id === 'string' ? (names.get(id) ?? id) : '-';

/** A line or cell never carries a control character from a sender (it could drive a terminal). */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) =>
    c === '\t' ? '  ' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

const oneLine = (text: string): string => printable(text.replace(/\r?\n/g, ' '));

export const EVENT_COLUMNS = [
  'ID',
  'RECEIVED',
  'CHANNEL',
  'STATUS',
  'ATTEMPTS',
  'METHOD',
  'PATH',
  'SIZE',
  'WAITING',
];

/** The `waiting.message` of an unfinished event (the relay's one line), or "". */
export function waitingLine(e: Obj): string {
  const w = e['waiting'];
  return isObject(w) && typeof w['message'] === 'string' ? oneLine(w['message']) : '';
}

export function eventRow(e: Obj, channels: Names): string[] {
  return [
    str(e['id']),
    str(e['receivedAt']),
    named(channels, e['channelId']),
    str(e['status']),
    str(e['attemptCount']),
    str(e['method']),
    oneLine(
      `${str(e['path']) === '-' ? '' : str(e['path'])}${e['query'] ? `?${str(e['query'])}` : ''}` ||
        '/',
    ),
    str(e['size']),
    waitingLine(e),
  ];
}

/** Header pairs ([name, value]) as a two-column table, or "(none)". */
function headerTable(headers: unknown, indent: string): string {
  const rows = (Array.isArray(headers) ? headers : [])
    .filter((h): h is [unknown, unknown] => Array.isArray(h) && h.length === 2)
    .map(([n, v]) => [oneLine(String(n)), oneLine(String(v))]);
  if (rows.length === 0) return `${indent}(none)\n`;
  return table(['NAME', 'VALUE'], rows)
    .split('\n')
    .filter(Boolean)
    .map((l) => `${indent}${l}\n`)
    .join('');
}

function headerValue(headers: unknown, name: string): string | undefined {
  if (!Array.isArray(headers)) return undefined;
  for (const h of headers) {
    if (Array.isArray(h) && String(h[0]).toLowerCase() === name) return String(h[1]);
  }
  return undefined;
}

/** Whether bytes read as UTF-8 text (no invalid sequence, few control characters). */
function asText(bytes: Buffer): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  // eslint-disable-next-line no-control-regex
  const controls = text.match(/[\u0000-\u0008\u000e-\u001f\u007f]/g)?.length ?? 0;
  return controls > Math.max(2, text.length / 100) ? undefined : text;
}

/** Like `hexdump -C`: offset, 16 bytes in hex, the printable ASCII beside. */
export function hexDump(bytes: Buffer, indent = ''): string {
  let out = '';
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.'));
    out += `${indent}${at.toString(16).padStart(8, '0')}  ${`${left}  ${right}`.padEnd(49)} |${ascii.join('')}|\n`;
  }
  return out;
}

/**
 * A body for a terminal: JSON pretty-printed when it parses (and is not cut short), UTF-8 text
 * as is (control characters escaped), anything else as a hex dump.
 */
export function decodeBody(bytes: Buffer, contentType: string | undefined, indent: string): string {
  if (bytes.length === 0) return `${indent}(empty)\n`;
  const text = asText(bytes);
  if (text === undefined) return hexDump(bytes, indent);
  const jsonish = /json/i.test(contentType ?? '') || /^\s*[[{]/.test(text);
  let shown = text;
  if (jsonish) {
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON after all (or cut short): shown as text
    }
  }
  const lines = shown.split(/\r?\n/).map((l) => `${indent}${printable(l)}`);
  return `${lines.join('\n')}\n`;
}

const base64 = (v: unknown): Buffer =>
  typeof v === 'string' ? Buffer.from(v, 'base64') : Buffer.alloc(0);

/** One attempt: when, outcome, status, agent, duration, error; the replay it belonged to. */
function attemptLines(a: Obj, n: number, agents: Names): string {
  const replay = typeof a['replay'] === 'number' && a['replay'] > 0 ? a['replay'] : 0;
  const parts = [
    `#${n}`,
    str(a['at']),
    str(a['outcome']),
    a['status'] === null || a['status'] === undefined ? '' : `HTTP ${str(a['status'])}`,
    a['agentId'] ? `agent ${named(agents, a['agentId'])}` : '',
    typeof a['durationMs'] === 'number' ? `${a['durationMs']} ms` : '',
    replay > 0 ? `[replay ${replay}]` : '[original]',
  ].filter(Boolean);
  let out = `  ${parts.join('  ')}\n`;
  if (typeof a['error'] === 'string' && a['error']) out += `    error: ${oneLine(a['error'])}\n`;
  const r = a['response'];
  if (isObject(r)) {
    out += '    response headers:\n' + headerTable(r['headers'], '      ');
    const bytes = base64(r['body']);
    const total = typeof r['bodyBytes'] === 'number' ? r['bodyBytes'] : bytes.length;
    const cut = r['truncated'] === true;
    out +=
      `    response body (${cut ? `first ${bytes.length} of ${total} bytes` : `${total} bytes`}):\n` +
      decodeBody(bytes, headerValue(r['headers'], 'content-type'), '      ');
  }
  return out;
}

/** `events show` for a person. */
export function renderEvent(e: Obj, channels: Names, agents: Names): string {
  const channel = named(channels, e['channelId']);
  const lines: string[] = [];
  const field = (label: string, value: string) => lines.push(`${label.padEnd(13)}${value}`);
  field('Event', str(e['id']));
  field('Channel', channel === e['channelId'] ? channel : `${channel} (${str(e['channelId'])})`);
  field('Status', str(e['status']));
  const waiting = waitingLine(e);
  if (waiting) field('Waiting', waiting);
  if (e['reason']) field('Reason', oneLine(str(e['reason'])));
  field('Received', str(e['receivedAt']));
  if (e['nextAttemptAt']) field('Next attempt', str(e['nextAttemptAt']));
  const q = e['query'] ? `?${str(e['query'])}` : '';
  field('Request', oneLine(`${str(e['method'])} ${str(e['path']) || '/'}${q}`));
  if (e['originalUrl']) field('URL', oneLine(str(e['originalUrl'])));
  if (e['remoteAddress']) field('From', str(e['remoteAddress']));
  if (e['orderKey']) field('Order key', oneLine(str(e['orderKey'])));
  if (Array.isArray(e['deliveredRoutes']))
    field('Delivered to', e['deliveredRoutes'].map(String).join(', '));
  let out = `${lines.join('\n')}\n\nHeaders:\n${headerTable(e['headers'], '  ')}`;
  const body = base64(e['body']);
  out += `\nBody (${body.length} bytes; --raw prints it as received):\n`;
  out += decodeBody(body, headerValue(e['headers'], 'content-type'), '  ');
  const attempts = list(e['attempts']);
  const counted = typeof e['attemptCount'] === 'number' ? e['attemptCount'] : attempts.length;
  out +=
    counted === attempts.length
      ? `\nAttempts (${attempts.length}):\n`
      : `\nAttempts (${attempts.length}; ${counted} since the last replay count against the retry schedule):\n`;
  if (attempts.length === 0) out += '  (none yet)\n';
  attempts.forEach((a, i) => (out += attemptLines(a, i + 1, agents)));
  return out;
}

/** A duration in ms as a person writes it: 500 ms, 5 s, 5 min, 2 h, 1 d. */
export function humanMs(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'min'],
    [1_000, 's'],
  ];
  for (const [size, unit] of units)
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  return `${ms} ms`;
}

/** `channel show`: the channel's settings, one per line (secrets are never in the answer). */
export function renderChannel(ch: Obj): string {
  const lines: [string, string][] = [
    ['Channel', `${printable(str(ch['name']))} (${str(ch['id'])})`],
    ['Ingress URL', str(ch['ingressUrl'])],
  ];
  const v = ch['verify'];
  if (isObject(v)) {
    const extra = ['header', 'algorithm', 'encoding', 'prefix']
      .filter((k) => typeof v[k] === 'string')
      .map((k) => `${k} ${printable(String(v[k]))}`);
    const rotating = v['rotating'] === true ? '; rotating (a previous secret is accepted too)' : '';
    lines.push([
      'Verify',
      `${str(v['provider'])}${extra.length ? ` (${extra.join(', ')})` : ''}${rotating}`,
    ]);
  } else {
    lines.push(['Verify', 'none (every request is accepted)']);
  }
  const r = ch['response'];
  if (isObject(r)) {
    lines.push([
      'Response',
      r['mode'] === 'sync'
        ? `sync: the provider waits up to ${humanMs(Number(r['timeoutMs']))} for the app's answer`
        : 'async: 202 once stored',
    ]);
  }
  const retry = ch['retry'];
  if (isObject(retry) && Array.isArray(retry['delaysMs'])) {
    const delays = retry['delaysMs'].map((d) => humanMs(Number(d)));
    lines.push(['Retries', delays.length ? `${delays.length}: ${delays.join(', ')}` : 'none']);
  }
  const key = ch['orderingKey'];
  const keyText = isObject(key)
    ? typeof key['header'] === 'string'
      ? `, key from header ${printable(key['header'])}`
      : `, key from JSON field ${printable(str(key['jsonField']))}`
    : '';
  lines.push(['Ordering', ch['ordered'] === true ? `ordered${keyText}` : 'unordered']);
  const rate = ch['rateLimit'];
  lines.push([
    'Rate limit',
    isObject(rate) ? `${str(rate['perSecond'])}/s, burst ${str(rate['burst'])}` : 'none',
  ]);
  lines.push(['Largest body', `${str(ch['maxBodyBytes'])} bytes`]);
  const words = (x: unknown, none: string) =>
    Array.isArray(x) ? x.map((w) => printable(String(w))).join(', ') || '(none)' : none;
  lines.push(['Methods', words(ch['methods'], "the provider's, or any")]);
  lines.push(['Paths', words(ch['paths'], 'any')]);
  lines.push(['Created', str(ch['createdAt'])]);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v2]) => `${`${k}:`.padEnd(width + 2)}${v2}\n`).join('');
}
