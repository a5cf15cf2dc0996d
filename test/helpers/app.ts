/**
 * A target app on 127.0.0.1:0 that records every request exactly as received (method, URL, raw
 * headers, body bytes) and answers as the test tells it to.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  body: Buffer;
  at: number;
}

export type Responder = (req: Received, res: ServerResponse) => void | Promise<void>;

export interface TestApp {
  url: string;
  received: Received[];
  /** Replace how the app answers (default: 200 "ok"). */
  respond: Responder;
  /** Resolves once at least `n` requests were received. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
  server: Server;
}

export async function startApp(respond?: Responder): Promise<TestApp> {
  const received: Received[] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  const app: TestApp = {
    url: '',
    received,
    respond: respond ?? ((_req, res) => void res.end('ok')),
    waitFor(n, timeoutMs = 30_000) {
      if (received.length >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`app got ${received.length} of ${n} requests`)),
          timeoutMs,
        );
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
    server: null as unknown as Server,
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body: Buffer.concat(chunks),
        at: Date.now(),
      };
      received.push(r);
      waiters = waiters.filter((w) => (received.length >= w.n ? (w.resolve(), false) : true));
      void app.respond(r, res);
    });
  });
  app.server = server;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  app.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return app;
}
