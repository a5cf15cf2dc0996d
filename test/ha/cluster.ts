/**
 * Several relays on one PostgreSQL database, as an operator runs them: each replica its own
 * data dir and port, the same admin token and secrets key, a round-robin TCP proxy in front
 * (the load balancer providers and agents dial), and a TCP proxy between the relays and the
 * database so that a test can take the database away. Real processes on 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestApp } from '../helpers/app.ts';
import {
  createDatabase,
  dropDatabase,
  randomDatabaseName,
  TEST_DATABASE_URL,
} from '../helpers/postgres.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type LogLine,
  type Proc,
  type RelayHandle,
} from '../helpers/processes.ts';
import { TcpProxy, unusedPort } from '../fault/helpers.ts';
import { RoundRobinProxy } from '../../scripts/bench/round-robin.ts';

// ---------------------------------------------------------------------------------------------
// The cluster

export interface Replica {
  index: number;
  /** Its application_name in pg_stat_activity (set through the database URL). */
  appName: string;
  port: number;
  dataDir: string;
  relay: RelayHandle;
  /** The process is stopped (SIGSTOP) or dead. */
  paused: boolean;
}

export interface ClusterOptions {
  replicas: number;
  /** POSTERN_LEASE_MS of every relay. */
  leaseMs: number;
  heartbeatMs: number;
}

export const ADMIN_TOKEN = `ha-${randomBytes(12).toString('hex')}`;
const SECRETS_KEY = randomBytes(32).toString('base64');

export class Cluster {
  readonly replicas: Replica[] = [];
  readonly agents: AgentHandle[] = [];
  /** The agents' ids, by index (the `/agent<n>` of their route). */
  readonly agentIds: string[] = [];
  readonly #dirs: string[] = [];
  /** Every relay process started, killed ones included (their logs explain a failure). */
  readonly procs: { replica: number; proc: Proc }[] = [];
  readonly #opts: ClusterOptions;
  readonly dbName = randomDatabaseName('postern_ha');
  /** The database URL, direct (for the test's own queries). */
  dbUrl = '';
  /** Between the relays and the database. */
  dbProxy!: TcpProxy;
  /** In front of the relays, for providers, agents and the admin API. */
  lb!: RoundRobinProxy;
  /** The admin API through the load balancer (retried over a connection a dead replica cut). */
  handle!: RelayHandle;

  private constructor(opts: ClusterOptions) {
    this.#opts = opts;
  }

  static async start(opts: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(opts);
    c.dbUrl = await createDatabase(c.dbName);
    const server = new URL(TEST_DATABASE_URL);
    c.dbProxy = await TcpProxy.start(`http://${server.hostname}:${server.port || 5432}`);
    c.lb = await RoundRobinProxy.start();
    const started = await Promise.all(
      Array.from({ length: opts.replicas }, async (_, index) => {
        const dataDir = await tempDir('postern-ha-');
        c.#dirs.push(dataDir);
        const port = await unusedPort();
        const appName = `postern-r${index}`;
        const relay = await c.#startRelay(dataDir, port, appName);
        return { index, appName, port, dataDir, relay, paused: false };
      }),
    );
    for (const r of started) {
      c.procs.push({ replica: r.index, proc: r.relay.proc });
      c.replicas.push(r);
      c.lb.add(r.port);
    }
    c.handle = c.#lbHandle();
    return c;
  }

  #relayDbUrl(appName: string): string {
    const u = new URL(this.dbUrl);
    const via = new URL(this.dbProxy.url);
    u.hostname = via.hostname;
    u.port = via.port;
    u.searchParams.set('application_name', appName);
    return u.toString();
  }

  #startRelay(dataDir: string, port: number, appName: string): Promise<RelayHandle> {
    return startRelay({
      dataDir,
      port,
      heartbeatMs: this.#opts.heartbeatMs,
      databaseUrl: this.#relayDbUrl(appName),
      extraArgs: ['--public-url', this.lb.url],
      env: {
        POSTERN_ADMIN_TOKEN: ADMIN_TOKEN,
        POSTERN_SECRETS_KEY: SECRETS_KEY,
        POSTERN_LEASE_MS: String(this.#opts.leaseMs),
      },
    });
  }

  #lbHandle(): RelayHandle {
    const url = this.lb.url;
    const api = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        let res: Response;
        try {
          res = await fetch(`${url}${p}`, {
            method,
            headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
            signal: AbortSignal.timeout(15_000),
          });
        } catch (err) {
          // A connection to a replica that died or stopped; reads are safe to repeat.
          if (method === 'GET' && attempt < 5) continue;
          throw err;
        }
        const text = await res.text();
        if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${text}`);
        return (text ? JSON.parse(text) : undefined) as T;
      }
    };
    const first = this.replicas[0]!.relay;
    return { proc: first.proc, url, token: ADMIN_TOKEN, dataDir: '', api, stop: async () => {} };
  }

  /** Pairs `count` agents through the load balancer, each with its own route to `app`. */
  async startAgents(
    count: number,
    channels: { id: string; name: string }[],
    app: TestApp,
  ): Promise<void> {
    for (let i = 0; i < count; i++) {
      const ids = channels.map((c) => c.id);
      const { stateDir, agentId } = await pairAgent(this.handle, ids, `ha-agent-${i}`, this.lb.url);
      this.#dirs.push(stateDir);
      this.agentIds.push(agentId);
      // The path names the agent, so the app knows who delivered each request.
      const routes = channels.map((c) => ({ channel: c.name, target: `${app.url}/agent${i}` }));
      this.agents.push(await startAgent(stateDir, routes));
    }
  }

  /**
   * Waits until every running replica answers 200 for `path` (with `text` in the body). Each replica's copy of the
   * channels and agents follows the database's change feed, a few ms behind a write made
   * through another replica: setup waits for it rather than racing it.
   */
  async waitSeen(path: string, text = '', timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const r of this.replicas) {
      if (r.paused) continue;
      for (;;) {
        const res = await fetch(`${r.relay.url}${path}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        const body = await res.text();
        if (res.ok && body.includes(text)) break;
        if (Date.now() > deadline) throw new Error(`replica ${r.index}: ${path} → ${res.status}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /** Log lines of every relay (as `r<replica> <line>`) that mention one of `words`. */
  linesMentioning(words: string[], limit = 40): string[] {
    const out: string[] = [];
    for (const { replica, proc } of this.procs) {
      for (const raw of proc.raw) {
        if (words.some((w) => raw.includes(w))) out.push(`r${replica} ${raw}`);
      }
    }
    return out.slice(0, limit);
  }

  /** Log lines at level warn or above from every relay since `since` (ms since the epoch). */
  warnings(since: number): string[] {
    const out: string[] = [];
    for (const { replica, proc } of this.procs) {
      for (const l of proc.lines) {
        if ((l.level ?? 0) >= 40 && Date.parse(String(l['time'])) >= since) {
          out.push(`r${replica} ${JSON.stringify(l)}`);
        }
      }
    }
    return out;
  }

  /** Agent ids with a live session on replica `i`, from its log. */
  agentsOn(i: number): Set<string> {
    return sessionsOf(this.replicas[i]!.relay.proc);
  }

  /** Replica indexes whose sessions hold agents, with how many. */
  placement(): number[] {
    return this.replicas.map((r) => this.agentsOn(r.index).size);
  }

  /** Waits until every agent has a session on some running replica. */
  async waitAgentsPlaced(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const on = new Set<string>();
      for (const r of this.replicas)
        if (!r.paused) for (const a of this.agentsOn(r.index)) on.add(a);
      if (on.size === this.agents.length) return;
      if (Date.now() > deadline) {
        throw new Error(
          `${on.size} of ${this.agents.length} agents connected (${this.placement()})`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  kill(i: number): Promise<number | null> {
    const r = this.replicas[i]!;
    r.paused = true;
    return r.relay.proc.kill('SIGKILL');
  }

  /** Starts replica `i` again on its port and data dir (after a kill). */
  async restart(i: number): Promise<void> {
    const r = this.replicas[i]!;
    r.relay = await this.#startRelay(r.dataDir, r.port, r.appName);
    this.procs.push({ replica: i, proc: r.relay.proc });
    r.paused = false;
    this.lb.setDown(r.port, false);
  }

  pause(i: number): void {
    const r = this.replicas[i]!;
    r.paused = true;
    this.lb.setDown(r.port, true);
    r.relay.proc.child.kill('SIGSTOP');
  }

  resume(i: number): void {
    const r = this.replicas[i]!;
    r.relay.proc.child.kill('SIGCONT');
    r.paused = false;
    this.lb.setDown(r.port, false);
  }

  /** Ends the database connections of replica `i` (pool and change feed); returns how many. */
  async terminateBackends(i: number): Promise<number> {
    const rows = await this.query<{ ended: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
        WHERE datname = $1 AND application_name = $2`,
      [this.dbName, this.replicas[i]!.appName],
    );
    return rows.filter((r) => r.ended).length;
  }

  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.dbUrl });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  async stop(): Promise<void> {
    for (const a of this.agents) await a.stop();
    for (const r of this.replicas) {
      if (r.paused) r.relay.proc.child.kill('SIGCONT');
      await r.relay.stop();
    }
    await this.lb?.close();
    await this.dbProxy?.close();
    await dropDatabase(this.dbName);
    for (const d of this.#dirs) await removeDir(d);
  }
}

/** Agent ids whose latest session on this relay is connected, from 'agent connected/disconnected'. */
export function sessionsOf(proc: Proc): Set<string> {
  const live = new Map<string, string>();
  for (const l of proc.lines as LogLine[]) {
    const sessionId = String(l['sessionId'] ?? '');
    if (l.msg === 'agent connected') live.set(sessionId, String(l['agentId']));
    else if (l.msg === 'agent disconnected') live.delete(sessionId);
  }
  return new Set(live.values());
}
