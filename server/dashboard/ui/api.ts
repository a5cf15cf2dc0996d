/**
 * The admin API client. The token travels only in the Authorization header, never in a URL.
 * Paths are relative to the page, so the dashboard also works under a proxy prefix.
 */
import { isObj, list, num, obj } from './decode.ts';
import {
  decodeAgent,
  decodeChannel,
  decodeEvent,
  decodeEventDetail,
  decodeEventPage,
  decodeNewAgent,
  type Agent,
  type Channel,
  type ChannelFields,
  type EventDetail,
  type EventPage,
  type EventView,
  type NewAgent,
} from './model.ts';
import { decodeStats, type StatsRange, type StatsSeries } from './stats-model.ts';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    /** HTTP status; 0 when the relay could not be reached at all. */
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface EventFilter {
  channel?: string;
  status?: string;
  before?: string;
  limit?: number;
  /** An event id, or text in header values and bodies. */
  q?: string;
  /** Received at or after / before (ms since the epoch). */
  since?: number | null;
  until?: number | null;
}

function errorOf(data: unknown, status: number): { code: string; message: string } {
  const error = isObj(data) ? data['error'] : undefined;
  if (isObj(error) && typeof error['code'] === 'string' && typeof error['message'] === 'string') {
    return { code: error['code'], message: error['message'] };
  }
  return { code: 'ERR_HTTP', message: `the relay answered HTTP ${status}` };
}

export class Api {
  readonly #token: string;
  readonly #onUnauthorized: () => void;

  /** `onUnauthorized` runs when the relay refuses the token (e.g. it was changed). */
  constructor(token: string, onUnauthorized: () => void = () => {}) {
    this.#token = token;
    this.#onUnauthorized = onUnauthorized;
  }

  get token(): string {
    return this.#token;
  }

  async #call(method: string, path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        cache: 'no-store',
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ApiError(0, 'ERR_NETWORK', `could not reach the relay (${why})`);
    }
    const text = await res.text();
    let data: unknown = null;
    try {
      data = text === '' ? null : JSON.parse(text);
    } catch {
      data = null;
    }
    if (!res.ok) {
      const { code, message } = errorOf(data, res.status);
      if (res.status === 401) this.#onUnauthorized();
      throw new ApiError(res.status, code, message);
    }
    return data;
  }

  async channels(): Promise<Channel[]> {
    return list(obj(await this.#call('GET', 'api/channels'), 'answer'), 'channels', decodeChannel);
  }

  async createChannel(fields: ChannelFields): Promise<Channel> {
    return decodeChannel(await this.#call('POST', 'api/channels', fields));
  }

  /** Changes only the fields given; a `verify` given replaces the whole config, secrets too. */
  async updateChannel(id: string, fields: ChannelFields): Promise<Channel> {
    return decodeChannel(
      await this.#call('PATCH', `api/channels/${encodeURIComponent(id)}`, fields),
    );
  }

  async deleteChannel(id: string): Promise<void> {
    await this.#call('DELETE', `api/channels/${encodeURIComponent(id)}`);
  }

  async agents(): Promise<Agent[]> {
    return list(obj(await this.#call('GET', 'api/agents'), 'answer'), 'agents', decodeAgent);
  }

  async addAgent(name: string, channels: string[]): Promise<NewAgent> {
    return decodeNewAgent(await this.#call('POST', 'api/agents', { name, channels }));
  }

  /** Changes the channels an agent is granted (ids or names). */
  async updateAgent(id: string, channels: string[]): Promise<Agent> {
    return decodeAgent(
      await this.#call('PATCH', `api/agents/${encodeURIComponent(id)}`, { channels }),
    );
  }

  /** A new one-time pairing code for an existing agent (pairing again replaces its key). */
  async newPairingCode(id: string): Promise<NewAgent> {
    return decodeNewAgent(
      await this.#call('POST', `api/agents/${encodeURIComponent(id)}/pairing-code`),
    );
  }

  async revokeAgent(id: string): Promise<void> {
    await this.#call('DELETE', `api/agents/${encodeURIComponent(id)}`);
  }

  async events(filter: EventFilter): Promise<EventPage> {
    const q = new URLSearchParams();
    if (filter.channel) q.set('channel', filter.channel);
    if (filter.status) q.set('status', filter.status);
    if (filter.before) q.set('before', filter.before);
    if (filter.q) q.set('q', filter.q);
    if (typeof filter.since === 'number') q.set('since', String(filter.since));
    if (typeof filter.until === 'number') q.set('until', String(filter.until));
    q.set('limit', String(filter.limit ?? 50));
    return decodeEventPage(await this.#call('GET', `api/events?${q.toString()}`));
  }

  async event(id: string): Promise<EventDetail> {
    return decodeEventDetail(await this.#call('GET', `api/events/${encodeURIComponent(id)}`));
  }

  /** Queues one event again (same id, fresh retry budget). */
  async replay(id: string): Promise<EventView> {
    return decodeEvent(await this.#call('POST', `api/events/${encodeURIComponent(id)}/replay`));
  }

  /** The store's statistics of the last hour (per minute) or day (per 15 minutes). */
  async stats(range: StatsRange): Promise<StatsSeries> {
    return decodeStats(await this.#call('GET', `api/stats?range=${range}`));
  }

  /** Queues every failed event of a channel again; answers how many. */
  async replayFailed(channel: string): Promise<number> {
    const answer = obj(
      await this.#call('POST', 'api/events/replay', { channel, status: 'failed' }),
      'answer',
    );
    return num(answer, 'queued');
  }
}
