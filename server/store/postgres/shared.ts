/**
 * Rule 8 of the store contract on PostgreSQL: what every relay of the database shares besides
 * events and control (migrations/002_shared_state.sql): token buckets taken under their row's
 * lock, the apps' answers to sync events (a row per event until its deadline, announced by a
 * notification naming it), and each relay's presence (announced when its set changes).
 */
import type pg from 'pg';
import { note } from './feed.ts';
import { toJsonb } from './rows.ts';
import type { AppResponse, Presence, RateLimit, StoreChange } from '../types.ts';

export interface SharedStateDeps {
  query: <R extends pg.QueryResultRow>(sql: string, params?: unknown[]) => Promise<R[]>;
  /** The store instance, in notifications (its own are not reported twice). */
  src: string;
  now: () => number;
  /** Reports a change to this store's own listeners. */
  emit: (change: StoreChange) => void;
}

export class SharedState {
  readonly #deps: SharedStateDeps;

  constructor(deps: SharedStateDeps) {
    this.#deps = deps;
  }

  async takeToken(key: string, limit: RateLimit, now: number): Promise<number> {
    const rows = await this.#deps.query<{ w: string }>(
      'SELECT postern_take_token($1, $2, $3, $4) AS w',
      [key, limit.perSecond, limit.burst, now],
    );
    return Number(rows[0]?.w ?? 0);
  }

  async publishResponse(response: AppResponse, until: number): Promise<void> {
    await this.#deps.query(
      `WITH gone AS (DELETE FROM postern_responses WHERE until < $6),
            put AS (
              INSERT INTO postern_responses (event_id, until, status, headers, body)
              VALUES ($1, $2, $3, $4::jsonb, $5)
              ON CONFLICT (event_id) DO UPDATE SET until = excluded.until,
                status = excluded.status, headers = excluded.headers, body = excluded.body
              RETURNING 1)
       SELECT pg_notify('postern_feed', $7) FROM put`,
      [
        response.eventId,
        until,
        response.status,
        toJsonb(response.headers),
        response.body,
        this.#deps.now(),
        note(this.#deps.src, { t: 'r', i: response.eventId }),
      ],
    );
    this.#deps.emit({ type: 'response', eventId: response.eventId });
  }

  async readResponse(eventId: string, now: number): Promise<AppResponse | undefined> {
    const rows = await this.#deps.query<{ status: number; headers: unknown; body: Buffer }>(
      'SELECT status, headers, body FROM postern_responses WHERE event_id = $1 AND until >= $2',
      [eventId, now],
    );
    const row = rows[0];
    if (!row) return undefined;
    const headers = Array.isArray(row.headers)
      ? row.headers.filter(
          (h): h is [string, string] =>
            Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'string',
        )
      : [];
    return { eventId, status: row.status, headers, body: row.body };
  }

  async putPresence(owner: string, agents: readonly string[], until: number): Promise<void> {
    const sorted = [...new Set(agents)].sort();
    const presence = note(this.#deps.src, { t: 'p' });
    const rows =
      sorted.length === 0
        ? await this.#deps.query(
            `WITH gone AS (DELETE FROM postern_presence WHERE owner = $1 RETURNING 1)
             SELECT pg_notify('postern_feed', $2) FROM gone`,
            [owner, presence],
          )
        : await this.#deps.query(
            `WITH old AS (SELECT agents FROM postern_presence WHERE owner = $1),
                  put AS (
                    INSERT INTO postern_presence (owner, agents, until) VALUES ($1, $2::jsonb, $3)
                    ON CONFLICT (owner) DO UPDATE SET agents = excluded.agents,
                      until = excluded.until
                    RETURNING 1)
             SELECT pg_notify('postern_feed', $4) FROM put
              WHERE (SELECT agents FROM old) IS DISTINCT FROM $2::jsonb`,
            [owner, toJsonb(sorted), until, presence],
          );
    if (rows.length > 0) this.#deps.emit({ type: 'presence' });
  }

  async readPresence(now: number): Promise<Presence[]> {
    const rows = await this.#deps.query<{ owner: string; agents: unknown; until: string }>(
      'SELECT owner, agents, until FROM postern_presence WHERE until >= $1',
      [now],
    );
    return rows.map((r) => ({
      owner: r.owner,
      agents: Array.isArray(r.agents)
        ? r.agents.filter((a): a is string => typeof a === 'string')
        : [],
      until: Number(r.until),
    }));
  }

  /** Forgets what rule 8 keeps past its time: full buckets, old answers, presence of the dead. */
  async prune(): Promise<void> {
    const now = this.#deps.now();
    await this.#deps.query(
      `WITH r AS (DELETE FROM postern_rate WHERE full_at < $1),
            a AS (DELETE FROM postern_responses WHERE until < $1)
       DELETE FROM postern_presence WHERE until < $1 - 60000`,
      [now],
    );
  }
}
