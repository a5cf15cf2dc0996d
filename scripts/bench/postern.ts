/**
 * Starts Postern the way a user does: the relay with `server/main.ts serve`, the agent paired
 * with `agent/main.ts pair` and run with `agent/main.ts run`, each its own process on
 * 127.0.0.1, port 0; plus the few admin API calls the benchmark needs.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exited, type Children } from './children.ts';
import type { BenchDatabases } from './databases.ts';
import { isRecord, str } from './ipc.ts';
import { LogProcess } from './log-process.ts';

const STARTUP_MS = 30_000;

export interface Relay {
  proc: LogProcess;
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  token: string;
  dataDir: string;
  /** From the spawn of the process to the first `200` from `/readyz`. */
  readyMs: number;
  /** On PostgreSQL: its own database (name), and where it was made; null on the embedded store. */
  database: { name: string; on: BenchDatabases } | null;
}

/** One of several relays on one database: what they share (the load balancer's URL too). */
export interface Replica {
  database: { name: string; on: BenchDatabases };
  adminToken: string;
  secretsKey: string;
  publicUrl: string;
  leaseMs: number;
}

/** Polls `/readyz` until it answers 200; resolves with that moment (ms since the epoch). */
async function readyAt(proc: LogProcess, url: string, deadline: number): Promise<number> {
  for (;;) {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5_000) }).catch(
      () => null,
    );
    if (res) await res.arrayBuffer();
    if (res?.status === 200) return Date.now();
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`relay exited before /readyz answered 200:\n${proc.tail.join('\n')}`);
    }
    if (Date.now() > deadline) throw new Error(`relay: /readyz not 200 within ${STARTUP_MS} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Starts a relay on a fresh data dir and port, or on `at` (an existing data dir, and the port
 * it had, so that a paired agent finds it again after a restart; and its database). With
 * `databases` (PostgreSQL), a fresh relay gets a fresh database on that server.
 */
export async function startRelay(
  kids: Children,
  databases: BenchDatabases | null,
  at?: Pick<Relay, 'dataDir' | 'port' | 'database'>,
  replica?: Replica,
): Promise<Relay> {
  const dataDir = at?.dataDir ?? (await kids.tempDir('postern-bench-relay-'));
  const port = String(at?.port ?? 0);
  let database = at ? at.database : (replica?.database ?? null);
  if (!at && !replica && databases) {
    const made = await databases.create();
    database = { name: made.name, on: databases };
  }
  const spawnedAt = Date.now();
  const child = kids.spawnTs(
    'server/main.ts',
    ['serve', '--host', '127.0.0.1', '--port', port, '--data-dir', dataDir, '--log-level', 'info'],
    ['ignore', 'pipe', 'pipe'],
    {
      // The token is generated into the data dir, whatever the caller's environment says.
      POSTERN_ADMIN_TOKEN: '',
      // The store is the bench's choice too; the URL (and its password) stays out of `ps`.
      POSTERN_DATABASE_URL: database ? database.on.urlOf(database.name) : '',
      ...(replica
        ? {
            POSTERN_ADMIN_TOKEN: replica.adminToken,
            POSTERN_SECRETS_KEY: replica.secretsKey,
            POSTERN_PUBLIC_URL: replica.publicUrl,
            POSTERN_LEASE_MS: String(replica.leaseMs),
          }
        : {}),
    },
  );
  const proc = new LogProcess(child, 'relay');
  const ready = await proc.waitForMsg('relay listening', STARTUP_MS);
  const url = ready['url'];
  if (typeof url !== 'string') throw new Error('relay: "relay listening" carries no url');
  const readyMs = (await readyAt(proc, url, spawnedAt + STARTUP_MS)) - spawnedAt;
  const token =
    replica?.adminToken ?? (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim();
  return { proc, url, port: Number(new URL(url).port), token, dataDir, readyMs, database };
}

/** kill -9 the relay, then start it again on the same data dir, port and database. */
export async function crashAndRestart(kids: Children, relay: Relay): Promise<Relay> {
  relay.proc.child.kill('SIGKILL');
  await exited(relay.proc.child);
  return startRelay(kids, relay.database?.on ?? null, relay);
}

/** Stops the relay (SIGTERM, as an operator would) and drops its database, if it has one. */
export async function stopRelay(kids: Children, relay: Relay): Promise<void> {
  await kids.stop(relay.proc.child);
  if (relay.database) await relay.database.on.drop(relay.database.name);
}

/** Calls the admin API and returns the parsed JSON answer; throws on a non-2xx status. */
export async function adminApi(
  relay: Relay,
  method: string,
  route: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${relay.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route} → ${res.status} ${text}`);
  const parsed: unknown = text ? JSON.parse(text) : {};
  if (!isRecord(parsed)) throw new Error(`${method} ${route}: expected a JSON object`);
  return parsed;
}

export interface Channel {
  id: string;
  name: string;
  /** The ingress URL on 127.0.0.1 (the relay's public URL may name `localhost`). */
  ingress: string;
}

export async function createChannel(
  relay: Relay,
  spec: { name: string; [key: string]: unknown },
): Promise<Channel> {
  const created = await adminApi(relay, 'POST', '/api/channels', spec);
  const id = str(created, 'id');
  return { id, name: spec.name, ingress: `${relay.url}/h/${id}` };
}

/** Adds an agent granted `channels` and pairs it through the agent CLI in a fresh state dir. */
export async function pairAgent(
  kids: Children,
  relay: Relay,
  name: string,
  channels: string[],
): Promise<{ agentId: string; stateDir: string }> {
  const added = await adminApi(relay, 'POST', '/api/agents', { name, channels });
  const stateDir = await kids.tempDir('postern-bench-agent-');
  const child = kids.spawnTs(
    'agent/main.ts',
    ['pair', '--relay', relay.url, '--code', str(added, 'pairingCode'), '--state-dir', stateDir],
    ['ignore', 'pipe', 'pipe'],
  );
  const proc = new LogProcess(child, 'agent pair');
  const code = await proc.exitCode(STARTUP_MS);
  if (code !== 0) throw new Error(`agent pair exited with ${code}:\n${proc.tail.join('\n')}`);
  return { agentId: str(added, 'id'), stateDir };
}

export interface AgentRoute {
  channel: string;
  target: string;
  /** The app's answer goes back to the provider (sync channels). */
  sync?: boolean;
}

export async function writeAgentConfig(stateDir: string, routes: AgentRoute[]): Promise<string> {
  const file = path.join(stateDir, 'agent.json');
  await writeFile(file, JSON.stringify({ routes }, null, 2));
  return file;
}

/** Runs the agent; resolves once it logs "connected to the relay" (and with that moment). */
export async function startAgent(
  kids: Children,
  stateDir: string,
  configFile: string,
): Promise<{ proc: LogProcess; connectedAt: number }> {
  const child = kids.spawnTs(
    'agent/main.ts',
    ['run', '--config', configFile, '--state-dir', stateDir, '--log-level', 'info'],
    ['ignore', 'pipe', 'pipe'],
  );
  const proc = new LogProcess(child, 'agent');
  await proc.waitForMsg('connected to the relay', STARTUP_MS);
  return { proc, connectedAt: Date.now() };
}

/** Waits until the relay no longer lists the agent as connected. */
export async function waitAgentGone(relay: Relay, agentId: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list: unknown = (await adminApi(relay, 'GET', '/api/agents'))['agents'];
    const agents: unknown[] = Array.isArray(list) ? list : [];
    const me = agents.find((a) => isRecord(a) && a['id'] === agentId);
    if (isRecord(me) && me['connected'] === false) return;
    if (Date.now() > deadline) throw new Error(`relay still lists agent ${agentId} as connected`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
