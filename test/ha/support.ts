/**
 * Accounting for the replica fault tests: what was acknowledged against what the app received,
 * with every duplicate sorted into a documented at-least-once case or not, and per-key order
 * on an ordered channel.
 */
import type { Agent } from 'undici';
import { request } from 'undici';
import type { Received } from '../helpers/app.ts';
import { account, idFromBody, makeBody, type Accounting, type Sent } from '../fault/helpers.ts';
import { eventIdOf } from '../fault/helpers.ts';

/** A fault: whose deliveries it may cut short, and when. */
export interface Fault {
  what: string;
  /** Agent indexes whose sessions the fault hit (all of them when the database went away). */
  agents: ReadonlySet<number>;
  from: number;
  until: number;
  /**
   * The database connection died: an append whose COMMIT was sent but not answered is in
   * doubt, answered 503 (nothing promised) and may still be committed and delivered.
   */
  database: boolean;
}

/**
 * A delivery whose outcome the relay could not record (its replica died, stalled past its
 * lease, or lost the database before its lazy settle committed) is offered again: the first
 * receipt was through an agent the fault hit, close to the fault. Nothing else may repeat.
 */
const SLACK_BEFORE_MS = 3_000;
const SLACK_AFTER_MS = 4_000;

export function agentOf(req: Received): number {
  const m = /^\/agent(\d+)(?:\/|\?|$)/.exec(req.url);
  return m ? Number(m[1]) : -1;
}

export interface Tally extends Accounting {
  documented: number;
  undocumented: string[];
  /** Receipts of events whose 202 never reached the provider (the connection died first). */
  unanswered: number;
  /** Receipts of events answered 503 whose COMMIT was in doubt (the database went away). */
  inDoubt: number;
  /** Receipts with an id no request in the set can explain. */
  unexplained: string[];
}

/** Accounting of `sent` against the app's receipts (only those with a body from this set). */
export function tally(
  sent: readonly Sent[],
  received: readonly Received[],
  faults: Fault[],
): Tally {
  const acked = new Map<string, Buffer>();
  for (const s of sent) if (s.status === 202 && s.id !== null) acked.set(s.id, s.body);
  const mine = new Set(sent.map((s) => s.body.toString('base64')));
  const ours = received.filter((r) => mine.has(r.body.toString('base64')));
  const a = account(acked, ours);
  const unansweredBodies = new Set(
    sent.filter((s) => s.status === null).map((s) => s.body.toString('base64')),
  );
  const refusedBodies = new Set(
    sent.filter((s) => s.status === 503).map((s) => s.body.toString('base64')),
  );
  const inDoubtAllowed = faults.some((f) => f.database);
  let unanswered = 0;
  let inDoubt = 0;
  const unexplained: string[] = [];
  for (const id of a.foreign) {
    const body = ours.find((x) => eventIdOf(x) === id)!.body.toString('base64');
    if (unansweredBodies.has(body)) unanswered++;
    else if (inDoubtAllowed && refusedBodies.has(body)) inDoubt++;
    else unexplained.push(id);
  }
  const byId = new Map<string, Received[]>();
  for (const r of ours) {
    const id = eventIdOf(r);
    byId.set(id, [...(byId.get(id) ?? []), r]);
  }
  let documented = 0;
  const undocumented: string[] = [];
  for (const [id, rs] of byId) {
    if (rs.length < 2) continue;
    rs.sort((x, y) => x.at - y.at);
    const first = rs[0]!;
    const explained = faults.some(
      (f) =>
        f.agents.has(agentOf(first)) &&
        first.at >= f.from - SLACK_BEFORE_MS &&
        first.at <= f.until + SLACK_AFTER_MS,
    );
    if (explained) documented += rs.length - 1;
    else undocumented.push(`${id} (${rs.map((r) => `agent${agentOf(r)}@${r.at}`).join(', ')})`);
  }
  return { ...a, documented, undocumented, unanswered, inDoubt, unexplained };
}

export function describe(label: string, sent: number, t: Tally): string {
  return (
    `${label}: ${sent} sent, ${t.acknowledged} acknowledged, ${t.delivered} delivered, ` +
    `${t.lost.length} lost, ${t.duplicates} duplicates (${t.documented} documented at-least-once: ` +
    `first delivery cut short by the fault; ${t.undocumented.length} not), ` +
    `${t.unanswered} delivered without their 202 (connection cut by the fault), ` +
    `${t.inDoubt} delivered though answered 503 (COMMIT in doubt when the database went away)`
  );
}

// ---------------------------------------------------------------------------------------------
// Ordered sends

export interface OrderedRun {
  sent: Sent[];
  keys: number;
  perKey: number;
}

/**
 * Sends `perKey` webhooks on each of `keys` keys (header `x-key`), one at a time per key and
 * keys in parallel, so that arrival order is seq order; a request without a 202 is sent again
 * (as a provider retries) until the deadline.
 */
export async function sendOrdered(opts: {
  url: string;
  keys: number;
  perKey: number;
  dispatcher: Agent;
  label: string;
  deadlineMs: number;
  /** Pause between two sends of one key. */
  gapMs: number;
}): Promise<OrderedRun> {
  const sent: Sent[] = [];
  const deadline = Date.now() + opts.deadlineMs;
  const sendKey = async (key: number) => {
    for (let n = 0; n < opts.perKey; n++) {
      const seq = key * opts.perKey + n;
      const body = makeBody(`${opts.label}-k${key}`, seq);
      for (;;) {
        if (Date.now() > deadline)
          throw new Error(`ordered sends past their deadline (key ${key})`);
        const s: Sent = { seq, body, status: null, id: null, retryAfter: null, error: null };
        try {
          const res = await request(opts.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-key': `k${key}` },
            body,
            dispatcher: opts.dispatcher,
          });
          const text = await res.body.text();
          s.status = res.statusCode;
          if (res.statusCode === 202) s.id = idFromBody(text);
        } catch (err) {
          s.error = (err as Error).message;
        }
        sent.push(s);
        if (s.status === 202) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      if (opts.gapMs > 0) await new Promise((r) => setTimeout(r, opts.gapMs));
    }
  };
  await Promise.all(Array.from({ length: opts.keys }, (_, k) => sendKey(k)));
  return { sent, keys: opts.keys, perKey: opts.perKey };
}

function seqOf(req: Received): number {
  const parsed: unknown = JSON.parse(req.body.toString());
  if (typeof parsed !== 'object' || parsed === null || !('seq' in parsed)) return -1;
  return typeof parsed.seq === 'number' ? parsed.seq : -1;
}

/**
 * For each key, the seqs in the order the app received them (`received` is in arrival order), repeats of the one just before
 * collapsed (a redelivery of the head, or a provider's retry, before the next event): must be
 * exactly 0..perKey-1. Returns the keys that are not, described.
 */
export function orderViolations(run: OrderedRun, received: readonly Received[]): string[] {
  const mine = new Set(run.sent.map((s) => s.body.toString('base64')));
  const perKey = new Map<number, number[]>();
  for (const r of received) {
    if (!mine.has(r.body.toString('base64'))) continue;
    const seq = seqOf(r);
    const key = Math.floor(seq / run.perKey);
    const list = perKey.get(key) ?? [];
    if (list[list.length - 1] !== seq) list.push(seq);
    perKey.set(key, list);
  }
  const bad: string[] = [];
  for (let k = 0; k < run.keys; k++) {
    const got = perKey.get(k) ?? [];
    const want = Array.from({ length: run.perKey }, (_, n) => k * run.perKey + n);
    if (got.join(',') !== want.join(',')) bad.push(`k${k}: ${got.join(',')}`);
  }
  return bad;
}
