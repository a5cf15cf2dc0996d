/**
 * Which of the agent's routes an event goes to: those of its channel whose `match` holds.
 * Several matching routes fan out; each is reported by name, so that a retry goes only to the
 * routes that did not get the event yet.
 */
import { fieldAt, JSON_LOOKUP_LIMITS, parseJsonBounded } from '../shared/bounded-json.ts';
import { headerValue } from '../shared/http.ts';
import type { RelayFrame } from '../shared/protocol.ts';
import type { AgentConfig, Match, Route } from './config.ts';

type Deliver = Extract<RelayFrame, { type: 'deliver' }>;

export type Selection =
  /** The config has no route for the channel at all: a misconfiguration, the event waits. */
  | { kind: 'no_route' }
  /** Routes exist but none matches: the event is done without a delivery. */
  | { kind: 'filtered' }
  /** The matching routes still to deliver to (maybe none: all got it in earlier attempts). */
  | { kind: 'deliver'; routes: Route[] };

function matches(match: Match, frame: Deliver, json: () => unknown): boolean {
  for (const [name, accepted] of match.headers) {
    const value = headerValue(frame.headers, name);
    if (value === undefined || !accepted.includes(value)) return false;
  }
  for (const [path, accepted] of match.json) {
    const value = fieldAt(json(), path);
    if (!accepted.some((a) => a === value)) return false;
  }
  return true;
}

export function selectRoutes(config: AgentConfig, frame: Deliver): Selection {
  const ofChannel = config.routes.filter(
    (r) => r.channel === frame.channelId || r.channel === frame.channelName,
  );
  if (ofChannel.length === 0) return { kind: 'no_route' };
  // Parsed at most once, and only within JSON_LOOKUP_LIMITS: a larger or deeper body matches
  // no json rule (its fields read as undefined).
  let parsed: { value: unknown } | undefined;
  const json = () => {
    if (!parsed) {
      const result = parseJsonBounded(frame.body, JSON_LOOKUP_LIMITS);
      parsed = { value: result.ok ? result.value : undefined };
    }
    return parsed.value;
  };
  const matching = ofChannel.filter((r) => r.match === null || matches(r.match, frame, json));
  if (matching.length === 0) return { kind: 'filtered' };
  const skip = new Set(frame.skipRoutes);
  return { kind: 'deliver', routes: matching.filter((r) => !skip.has(r.name)) };
}

/** At most `limit` holders at once; the others wait in arrival order. */
export class Semaphore {
  readonly #limit: number;
  #held = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#held >= this.#limit) await new Promise<void>((r) => this.#waiting.push(r));
    else this.#held++;
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#held--;
    }
  }
}
