/**
 * The change feed across relays: LISTEN on a connection of its own (a pooled one would be
 * handed to queries). Each relay reports its own changes itself and skips their echo; after a
 * reconnect, when notifications may have been missed, it reports work on every channel and a
 * control change so that dispatch and caches look again.
 */
import pg from 'pg';
import { isObject } from '../../../shared/fields.ts';
import { scrubError } from './pool.ts';
import { parseSummary } from './rows.ts';
import type { EventSummary } from '../types.ts';

export const FEED_CHANNEL = 'postern_feed';

/** A change reported by another store instance. */
export type RemoteChange =
  | { type: 'event'; event: EventSummary }
  /** An event changed whose summary did not fit in a notification: read it. */
  | { type: 'eventId'; id: string }
  | { type: 'work'; channelId: string }
  | { type: 'control' }
  | { type: 'response'; eventId: string }
  | { type: 'presence' };

export interface FeedOptions {
  config: pg.ClientConfig;
  url: string;
  /** This store instance: its own notifications are skipped. */
  src: string;
  onChange: (change: RemoteChange) => void;
  /** Connected again after a loss: notifications may have been missed. */
  onResume: () => void;
  onError: (err: Error) => void;
  /** Delay before the next reconnect (attempt counts from 1); default: capped full jitter. */
  backoff?: (attempt: number) => number;
}

const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 5_000;

function fullJitter(attempt: number): number {
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

/**
 * A notification's payload limit is 8000 bytes: summaries travel together up to this many
 * bytes, and one larger than it as its id.
 */
export const MAX_NOTIFY_BYTES = 7_000;
/** Ids of large events per notification at most (about 30 bytes each). */
const IDS_PER_NOTE = 100;

/** What a notification carries, after the name of the store instance that sent it. */
export type NoteBody =
  | { t: 'e'; e: EventSummary[] }
  | { t: 'i'; i: string[] }
  | { t: 'w'; c: string }
  | { t: 'c' }
  | { t: 'r'; i: string }
  | { t: 'p' };

/**
 * A notification's payload: the store instance that made the change, a space, and the change
 * as JSON. A listener skips its own by the prefix, without parsing them.
 */
export function note(src: string, body: NoteBody): string {
  return `${src} ${JSON.stringify(body)}`;
}

/** The payloads telling other relays of changed events: several per notification. */
export function eventNotes(src: string, summaries: readonly EventSummary[]): string[] {
  const out: string[] = [];
  let part: string[] = [];
  let bytes = 0;
  const large: string[] = [];
  for (const summary of summaries) {
    const json = JSON.stringify(summary);
    const size = Buffer.byteLength(json);
    if (size > MAX_NOTIFY_BYTES) {
      large.push(summary.id);
      continue;
    }
    if (bytes + size > MAX_NOTIFY_BYTES) {
      out.push(`${src} {"t":"e","e":[${part.join(',')}]}`);
      part = [];
      bytes = 0;
    }
    part.push(json);
    bytes += size + 1;
  }
  if (part.length > 0) out.push(`${src} {"t":"e","e":[${part.join(',')}]}`);
  for (let i = 0; i < large.length; i += IDS_PER_NOTE) {
    out.push(note(src, { t: 'i', i: large.slice(i, i + IDS_PER_NOTE) }));
  }
  return out;
}

/** Decodes a notification: nothing for this instance's own, or one not understood. */
export function decodeNotification(payload: string, src: string): RemoteChange[] {
  const space = payload.indexOf(' ');
  if (space <= 0 || (space === src.length && payload.startsWith(src))) return [];
  let value: unknown;
  try {
    value = JSON.parse(payload.slice(space + 1));
  } catch {
    return [];
  }
  if (!isObject(value)) return [];
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  switch (value['t']) {
    case 'e':
      return Array.isArray(value['e'])
        ? value['e'].map((e: unknown) => ({ type: 'event', event: parseSummary(e) }))
        : [];
    case 'i':
      return strings(value['i']).map((id) => ({ type: 'eventId', id }));
    case 'w':
      return typeof value['c'] === 'string' ? [{ type: 'work', channelId: value['c'] }] : [];
    case 'c':
      return [{ type: 'control' }];
    case 'r':
      return typeof value['i'] === 'string' ? [{ type: 'response', eventId: value['i'] }] : [];
    case 'p':
      return [{ type: 'presence' }];
    default:
      return [];
  }
}

export class Feed {
  readonly #opts: FeedOptions;
  #client: pg.Client | null = null;
  #stopped = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(opts: FeedOptions) {
    this.#opts = opts;
  }

  /** Connects and listens; rejects if the first connection fails. */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => undefined);
  }

  /** Whether the listening connection is up now. */
  get connected(): boolean {
    return this.#client !== null;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#opts.config);
    let lost = false;
    const onLost = (err?: Error) => {
      if (lost) return;
      lost = true;
      if (this.#client === client) this.#client = null;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (err) this.#opts.onError(scrubError(err, this.#opts.url));
      this.#reconnectLater();
    };
    client.on('error', onLost);
    try {
      await client.connect();
      await client.query(`LISTEN ${FEED_CHANNEL}`);
    } catch (err) {
      lost = true;
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw scrubError(err, this.#opts.url);
    }
    if (this.#stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    client.on('end', () => {
      if (!this.#stopped) onLost();
    });
    client.on('notification', (msg) => {
      if (msg.channel !== FEED_CHANNEL || msg.payload === undefined) return;
      let changes: RemoteChange[];
      try {
        changes = decodeNotification(msg.payload, this.#opts.src);
      } catch (err) {
        this.#opts.onError(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      for (const change of changes) this.#opts.onChange(change);
    });
    this.#client = client;
  }

  #reconnectLater(): void {
    if (this.#stopped || this.#timer) return;
    this.#attempt++;
    const delay = (this.#opts.backoff ?? fullJitter)(this.#attempt);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect().then(
        () => {
          if (this.#stopped) return;
          this.#attempt = 0;
          this.#opts.onResume();
        },
        (err: unknown) => {
          this.#opts.onError(err instanceof Error ? err : new Error(String(err)));
          this.#reconnectLater();
        },
      );
    }, delay);
    this.#timer.unref();
  }
}
