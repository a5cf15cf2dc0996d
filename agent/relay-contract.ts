/**
 * What the relay announced in `welcome`, held against every `deliver` of that connection: the
 * window, MAX_INFLIGHT_BYTES of unacknowledged bodies, and the channels granted (by id). A relay
 * that breaks it is misbehaving (compromised or buggy) and the connection is closed with 1002:
 * it can neither grow the agent's memory without bound nor reach a channel it did not grant.
 *
 * The count mirrors the relay's own (server/dispatch/sessions.ts): each `deliver` holds a slot
 * from its arrival until the agent SENDS its ack, redeliveries of an event already running or
 * delivered included. The relay frees a slot only on receiving that ack, later, so its count is
 * never below ours and a relay that keeps to its window is never refused.
 */
import { ProtocolError } from '../shared/errors.ts';
import { MAX_INFLIGHT_BYTES, type ChannelRef } from '../shared/protocol.ts';

/** A granted window slot; `release` (once the ack is sent) frees it, and only once. */
export interface Slot {
  release(): void;
}

export class RelayContract {
  readonly window: number;
  readonly #granted: ReadonlyMap<string, string>;
  #count = 0;
  #bytes = 0;

  constructor(welcome: { window: number; channels: readonly ChannelRef[] }) {
    this.window = welcome.window;
    this.#granted = new Map(welcome.channels.map((c) => [c.id, c.name]));
  }

  /** Deliveries received and not yet acknowledged. */
  get inFlight(): number {
    return this.#count;
  }

  /** Body bytes of those deliveries. */
  get inFlightBytes(): number {
    return this.#bytes;
  }

  /**
   * The name `welcome` gave the channel: the agent routes by it, whatever a `deliver` says (a
   * channel renamed on the relay keeps its old name here until the agent reconnects).
   */
  grantedName(channelId: string): string | undefined {
    return this.#granted.get(channelId);
  }

  /**
   * Takes a slot for a `deliver` of `bodyBytes`, checking its channel id when it has a readable
   * one. Returns the breach instead when the relay sent more than it announced.
   */
  admit(bodyBytes: number, channelId: string | null): Slot | ProtocolError {
    if (this.#count >= this.window) {
      return new ProtocolError(
        'ERR_PROTOCOL_WINDOW_EXCEEDED',
        `deliver beyond the window of ${this.window}: ${this.#count} already unacknowledged`,
      );
    }
    if (this.#bytes >= MAX_INFLIGHT_BYTES) {
      return new ProtocolError(
        'ERR_PROTOCOL_WINDOW_EXCEEDED',
        `deliver beyond ${MAX_INFLIGHT_BYTES} unacknowledged body bytes: ${this.#bytes} already`,
      );
    }
    if (channelId !== null && !this.#granted.has(channelId)) {
      return new ProtocolError(
        'ERR_PROTOCOL_CHANNEL_NOT_GRANTED',
        `deliver for channel ${JSON.stringify(channelId)}, which the welcome did not grant`,
      );
    }
    this.#count++;
    this.#bytes += bodyBytes;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#count--;
        this.#bytes -= bodyBytes;
      },
    };
  }
}
