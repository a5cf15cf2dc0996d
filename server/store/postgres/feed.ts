/**
 * The change feed across relays: LISTEN on a connection of its own (a pooled one would be
 * handed to queries). Each relay reports its own changes itself and skips their echo; after a
 * reconnect, when notifications may have been missed, it reports work on every channel and a
 * control change so that dispatch and caches look again.
 */
import pg from 'pg';
import { isObject } from '../../../shared/fields.ts';
import { scrubError } from './pool.ts';

export const FEED_CHANNEL = 'postern_feed';

/** A change reported by another store instance. */
export type RemoteChange =
  /** Events added or changed: read them, if anybody here wants to see them. */
  | { type: 'events'; ids: string[] }
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
 * Ids of changed events per notification at most: about 30 bytes each, under the payload limit
 * of 8000 bytes. The same bound as in postern_notify_events (migrations/).
 */
const IDS_PER_NOTE = 200;

/** What a notification carries, after the name of the store instance that sent it. */
export type NoteBody =
  { t: 'i'; i: string[] } | { t: 'w'; c: string } | { t: 'c' } | { t: 'r'; i: string } | { t: 'p' };

/**
 * A notification's payload: the store instance that made the change, a space, and the change
 * as JSON. A listener skips its own by the prefix, without parsing them.
 */
export function note(src: string, body: NoteBody): string {
  return `${src} ${JSON.stringify(body)}`;
}

/**
 * The payloads telling other relays of changed events: their ids, many per notification (a
 * relay reads the events only when something of its own shows them live).
 */
export function eventNotes(src: string, ids: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_NOTE) {
    out.push(note(src, { t: 'i', i: ids.slice(i, i + IDS_PER_NOTE) }));
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
    case 'i': {
      const ids = strings(value['i']);
      return ids.length > 0 ? [{ type: 'events', ids }] : [];
    }
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
