/**
 * Several relays on one PostgreSQL database, as an operator runs them (real processes): one
 * database per test file, the same admin token, secrets key and public URL for every relay, each
 * relay with its own data dir. Agents are paired through, and dial, the relay a test chooses.
 */
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { decodeRelayFrame, encodeFrame } from '../../shared/codec.ts';
import type { RelayFrame } from '../../shared/protocol.ts';
import { createDatabase, dropDatabase, randomDatabaseName } from '../helpers/postgres.ts';
import {
  removeDir,
  startRelay,
  tempDir,
  type RelayHandle,
  type RelayOptions,
} from '../helpers/processes.ts';

/** The URL providers and agents use (the load balancer's, in a real deployment). */
export const PUBLIC_URL = 'http://postern.test';

export interface Replicas {
  relays: RelayHandle[];
  databaseUrl: string;
  /** Starts one more relay on the same database (e.g. to replace one that was killed). */
  add(opts?: RelayOptions): Promise<RelayHandle>;
  close(): Promise<void>;
}

export async function startReplicas(n: number, opts: RelayOptions = {}): Promise<Replicas> {
  const name = randomDatabaseName('postern_replicas');
  const databaseUrl = await createDatabase(name);
  const env = {
    POSTERN_ADMIN_TOKEN: randomBytes(24).toString('hex'),
    POSTERN_SECRETS_KEY: randomBytes(32).toString('base64'),
    ...opts.env,
  };
  const relays: RelayHandle[] = [];
  const add = async (more: RelayOptions = {}) => {
    const relay = await startRelay({
      ...opts,
      ...more,
      dataDir: await tempDir('postern-replica-'),
      env: { ...env, ...more.env },
      extraArgs: [
        '--database-url',
        databaseUrl,
        '--public-url',
        PUBLIC_URL,
        ...(opts.extraArgs ?? []),
        ...(more.extraArgs ?? []),
      ],
    });
    relays.push(relay);
    return relay;
  };
  try {
    // One after the other: the first applies the migrations, the others find them applied.
    for (let i = 0; i < n; i++) await add();
  } catch (err) {
    for (const r of relays) await r.proc.kill('SIGKILL');
    await dropDatabase(name);
    throw err;
  }
  return {
    relays,
    databaseUrl,
    add,
    async close() {
      for (const r of relays) {
        r.proc.child.kill('SIGCONT');
        await r.stop();
        await removeDir(r.dataDir);
      }
      await dropDatabase(name);
    },
  };
}

/** POSTs a webhook; returns the status, headers and body. */
export async function post(
  relay: RelayHandle,
  channelId: string,
  body: string,
  suffix = '',
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`${relay.url}/h/${channelId}${suffix}`, { method: 'POST', body });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The relay's `postern_events{status=…}` gauges from `/metrics`. */
export async function eventGauges(relay: RelayHandle): Promise<Record<string, number>> {
  const res = await fetch(`${relay.url}/metrics`, {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  const out: Record<string, number> = {};
  for (const m of (await res.text()).matchAll(/^postern_events\{status="(\w+)"\} (\d+)$/gm)) {
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** The next frame the relay sends on a raw tunnel socket. */
export function nextFrame(ws: WebSocket): Promise<RelayFrame> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data: Buffer) => {
      try {
        resolve(decodeRelayFrame(data));
      } catch (err) {
        reject(err as Error);
      }
    });
    ws.once('close', (code) => reject(new Error(`closed ${code} before a frame`)));
  });
}

/** Says hello on a raw tunnel socket; returns the relay's answer (welcome). */
export function hello(ws: WebSocket): Promise<RelayFrame> {
  const frame = nextFrame(ws);
  ws.send(encodeFrame({ type: 'hello', protocol: 1, agentVersion: 'test' }));
  return frame;
}
