/**
 * A round-robin TCP load balancer on 127.0.0.1 in front of several relays, for the replica
 * bench and the replica fault tests: no sticky sessions, the next upstream for each new
 * connection, an upstream that refuses skipped, one marked down left out.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';

interface Upstream {
  port: number;
  /** Taken out of the rotation (what a load balancer's health check does). */
  down: boolean;
  sockets: Set<net.Socket>;
}

/**
 * A round-robin TCP proxy on 127.0.0.1:0, no sticky sessions: each new connection goes to the
 * next upstream in turn. An upstream that refuses the connection is skipped for the next one
 * (nginx's `proxy_next_upstream error`); one marked down gets no new connection.
 */
export class RoundRobinProxy {
  readonly #server: net.Server;
  readonly #upstreams: Upstream[] = [];
  #next = 0;
  url = '';

  private constructor() {
    this.#server = net.createServer((client) => this.#accept(client));
  }

  static async start(): Promise<RoundRobinProxy> {
    const proxy = new RoundRobinProxy();
    proxy.#server.listen(0, '127.0.0.1');
    await once(proxy.#server, 'listening');
    proxy.url = `http://127.0.0.1:${(proxy.#server.address() as AddressInfo).port}`;
    return proxy;
  }

  add(port: number): void {
    this.#upstreams.push({ port, down: false, sockets: new Set() });
  }

  setDown(port: number, down: boolean): void {
    for (const u of this.#upstreams) if (u.port === port) u.down = down;
  }

  #accept(client: net.Socket): void {
    client.pause();
    client.on('error', () => undefined);
    const live = this.#upstreams.filter((u) => !u.down);
    const first = this.#next++;
    const attempt = (tried: number) => {
      const u = live[(first + tried) % live.length];
      if (u === undefined || tried >= live.length || client.destroyed) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(u.port, '127.0.0.1');
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        u.sockets.add(upstream);
        upstream.once('close', () => u.sockets.delete(upstream));
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        client.once('close', () => upstream.destroy());
        upstream.once('close', () => client.destroy());
      });
      upstream.on('error', () => {
        if (!connected) attempt(tried + 1);
      });
    };
    attempt(0);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const u of this.#upstreams) for (const s of u.sockets) s.destroy();
    await closed;
  }
}
