/**
 * Which agents have a live tunnel on any relay of the store: each relay says which agents it
 * holds (when that changes, and again every third of PRESENCE_TTL_MS so that a relay that dies
 * drops out by itself), and reads every relay's when the store reports a change. The admin API
 * shows an agent connected wherever it is, and ingress knows whether a sync channel's answer
 * may come from an agent on another relay.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Store } from './store/types.ts';

/** How long a relay's word holds without being said again. */
export const PRESENCE_TTL_MS = 15_000;

export interface PresenceDeps {
  store: Store;
  logger: Logger;
  /** The agents with a live tunnel on this relay. */
  local: () => string[];
  now?: () => number;
  ttlMs?: number;
}

export class PresenceBoard {
  readonly #deps: PresenceDeps;
  readonly #now: () => number;
  readonly #ttlMs: number;
  /** This relay, as the store knows its presence. */
  readonly #owner = `relay-${randomUUID()}`;
  /** Agents on other relays, with the time their relay's word runs out. */
  #elsewhere = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #unsubscribe: () => void = () => undefined;
  /** The write under way, if any. */
  #publishing: Promise<void> | null = null;
  #publishAgain = false;
  #reading = false;
  #readAgain = false;
  #stopped = false;

  constructor(deps: PresenceDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#ttlMs = deps.ttlMs ?? PRESENCE_TTL_MS;
  }

  start(): void {
    this.#unsubscribe = this.#deps.store.subscribe(
      (change) => {
        if (change.type === 'presence') this.#read();
      },
      { events: false },
    );
    this.#timer = setInterval(
      () => {
        this.changed();
        this.#read();
      },
      Math.max(1, Math.floor(this.#ttlMs / 3)),
    );
    this.#timer.unref();
    this.changed();
    this.#read();
  }

  /** Withdraws this relay's word (its agents are gone with it). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    // After the write under way, so that it cannot land after the withdrawal.
    await this.#publishing;
    await this.#deps.store.putPresence(this.#owner, [], 0).catch(() => undefined);
  }

  /** Whether the agent has a live tunnel on another relay (as last read). */
  elsewhere(agentId: string): boolean {
    const until = this.#elsewhere.get(agentId);
    return until !== undefined && until >= this.#now();
  }

  /** This relay's agents changed: say so (one write at a time, the latest wins). */
  changed(): void {
    if (this.#stopped) return;
    if (this.#publishing) {
      this.#publishAgain = true;
      return;
    }
    this.#publishing = this.#deps.store
      .putPresence(this.#owner, this.#deps.local(), this.#now() + this.#ttlMs)
      .catch((err: unknown) =>
        this.#deps.logger.warn({ err: String(err) }, 'could not publish which agents are here'),
      )
      .finally(() => {
        this.#publishing = null;
        if (this.#publishAgain) {
          this.#publishAgain = false;
          this.changed();
        }
      });
  }

  #read(): void {
    if (this.#stopped) return;
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = true;
    this.#deps.store
      .readPresence(this.#now())
      .then((all) => {
        const next = new Map<string, number>();
        for (const p of all) {
          if (p.owner === this.#owner) continue;
          for (const a of p.agents) next.set(a, Math.max(next.get(a) ?? 0, p.until));
        }
        this.#elsewhere = next;
      })
      .catch((err: unknown) =>
        this.#deps.logger.warn({ err: String(err) }, 'could not read which agents are where'),
      )
      .finally(() => {
        this.#reading = false;
        if (this.#readAgain) {
          this.#readAgain = false;
          this.#read();
        }
      });
  }
}
