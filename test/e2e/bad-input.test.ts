/**
 * Bad input changes nothing: oversized bodies, forged GitHub signatures, unknown channels,
 * malformed tunnel frames and broken agent configs are refused with the documented status or
 * close code, store nothing, deliver nothing, and leave the relay serving.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { after, before } from 'node:test';
import { Agent, request } from 'undici';
import type { WebSocket } from 'ws';
import { MAX_AGENT_FRAME_BYTES } from '../../shared/protocol.ts';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import {
  ROOT,
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  listEvents,
} from '../helpers/processes.ts';
import { dial, loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import { test } from '../helpers/store.ts';

interface EventView {
  id: string;
  channelId: string;
  status: string;
  attemptCount: number;
}

interface ChannelView {
  id: string;
  maxBodyBytes: number;
}

const LIMIT = 1024;
const GITHUB_SECRET = "It's a Secret to Everybody";
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
/** Runs from the start: delivers the `small`, `gh` and `plain` channels. */
let mainAgent: AgentHandle | undefined;
/** Paired for `tunnel`; its identity dials the raw frames, then it runs for real. */
let tunnelAgent: AgentHandle | undefined;
let tunnelStateDir: string | undefined;
/** Paired for `cfg`; only ever started with broken configs. */
let cfgStateDir: string | undefined;
const dirs: string[] = [];
const channels = new Map<string, string>(); // name → id
const sockets: (Socket | WebSocket)[] = [];
const children: ChildProcess[] = [];
const http = new Agent({ connections: 8, headersTimeout: 15_000, bodyTimeout: 15_000 });

before(async () => {
  app = await startApp();
  const dataDir = await tempDir();
  dirs.push(dataDir);
  relay = await startRelay({ dataDir });
  for (const [name, extra] of [
    ['small', { maxBodyBytes: LIMIT }],
    ['gh', { verify: { provider: 'github', secret: GITHUB_SECRET } }],
    ['plain', {}],
    ['tunnel', {}],
    ['cfg', {}],
  ] as const) {
    const c: ChannelView = await relay.api<ChannelView>('POST', '/api/channels', {
      name,
      ...extra,
    });
    if (name === 'small') assert.equal(c.maxBodyBytes, LIMIT);
    channels.set(name, c.id);
  }
  const main = await pairAgent(relay, [ch('small'), ch('gh'), ch('plain')], 'main-agent');
  dirs.push(main.stateDir);
  const tunnel = await pairAgent(relay, [ch('tunnel')], 'tunnel-agent');
  tunnelStateDir = tunnel.stateDir;
  dirs.push(tunnel.stateDir);
  const cfg = await pairAgent(relay, [ch('cfg')], 'cfg-agent');
  cfgStateDir = cfg.stateDir;
  dirs.push(cfg.stateDir);
  mainAgent = await startAgent(main.stateDir, [
    { channel: 'small', target: `${app.url}/small` },
    { channel: 'gh', target: `${app.url}/gh` },
    { channel: 'plain', target: `${app.url}/plain` },
  ]);
});

after(async () => {
  for (const s of sockets) {
    if ('terminate' in s) s.terminate();
    else s.destroy();
  }
  // SIGTERM, not SIGKILL: tsx passes it on to the node process it runs.
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await tunnelAgent?.stop();
  await mainAgent?.stop();
  await relay?.stop();
  await app?.close();
  await http.close();
  for (const d of dirs) await removeDir(d);
});

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

function ch(name: string): string {
  return need(channels.get(name), `channel ${name}`);
}

/** Every stored event, following the `next` cursor (bounded). */
function allEvents(): Promise<EventView[]> {
  return listEvents<EventView>(need(relay, 'relay'));
}

function receivedOn(channel: string): Received[] {
  return need(app, 'app').received.filter((r) => r.headers['x-postern-channel'] === channel);
}

function eventIdOf(req: Received): string {
  return String(req.headers['x-postern-event-id']);
}

async function send(
  pathAndQuery: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<{ status: number; text: string }> {
  const r = need(relay, 'relay');
  const res = await request(`${r.url}${pathAndQuery}`, {
    method: opts.method ?? 'POST',
    headers: opts.headers ?? {},
    body: opts.body ?? null,
    dispatcher: http,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

function idOf(text: string): string {
  const parsed: unknown = JSON.parse(text);
  const id =
    typeof parsed === 'object' && parsed !== null && 'id' in parsed ? parsed.id : undefined;
  assert.equal(typeof id, 'string', `answer carries an event id: ${text}`);
  return String(id);
}

/** Waits until the app has a request for this event id and returns it. */
async function arrival(id: string): Promise<Received> {
  return eventually(
    () => need(app, 'app').received.find((r) => eventIdOf(r) === id),
    20_000,
    `event ${id} at the app`,
  );
}

interface RawResponse {
  status: number;
  head: string;
  body: string;
  /** Whether the relay closed the connection after answering. */
  closed: boolean;
}

/**
 * Speaks HTTP/1.1 by hand, so that what is (not) sent after the headers is exactly ours.
 * `write` gets the socket once connected; resolves with the first response once it is
 * complete, or fails after `timeoutMs` (the relay waiting for a body it should not need).
 */
function rawHttp(write: (s: Socket) => void, timeoutMs = 5_000): Promise<RawResponse> {
  const r = need(relay, 'relay');
  const { hostname, port } = new URL(r.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    sockets.push(socket);
    let data = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no complete response in ${timeoutMs} ms; got: ${data.toString('latin1')}`));
    }, timeoutMs);
    const tryParse = (closed: boolean): void => {
      if (done) return;
      const text = data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) {
        if (closed) {
          done = true;
          clearTimeout(timer);
          reject(new Error(`connection closed before a response; got: ${text}`));
        }
        return;
      }
      const head = text.slice(0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? '0');
      const body = text.slice(end + 4);
      if (body.length < length && !closed) return;
      if (!closed && /\r\nconnection: *close/i.test(head)) return; // wait for the close too
      done = true;
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? '0');
      resolve({ status, head, body: body.slice(0, length), closed });
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      tryParse(false);
    });
    socket.on('close', () => tryParse(true));
    socket.on('error', () => {
      // A reset after the answer is fine; tryParse on 'close' decides.
    });
    socket.once('connect', () => write(socket));
  });
}

function requestHead(channelId: string, headers: string[]): string {
  return [`POST /h/${channelId}/upload HTTP/1.1`, 'Host: 127.0.0.1', ...headers, '', ''].join(
    '\r\n',
  );
}

// ---- ingress: body size ----------------------------------------------------------------------

test('413 from Content-Length alone: the relay answers without reading the body', async () => {
  const before = (await allEvents()).length;
  for (const declared of [LIMIT + 1, 50 * 1024 * 1024]) {
    // Headers only: a relay that waited for the body would never answer.
    const res = await rawHttp((s) =>
      s.write(
        requestHead(ch('small'), [
          `Content-Length: ${declared}`,
          'Content-Type: application/octet-stream',
        ]),
      ),
    );
    assert.equal(res.status, 413, `Content-Length ${declared}: ${res.head}\n${res.body}`);
    assert.match(res.body, /ERR_BODY_TOO_LARGE/);
    // Up to 32 MiB the relay reads and drops the rest (a proxy in front then relays the 413
    // instead of a broken pipe); beyond that it closes the connection.
    assert.equal(res.closed, declared > 32 * 1024 * 1024, `closed after a ${declared}-byte 413`);
  }
  assert.equal((await allEvents()).length, before, 'no event stored');
  assert.equal(receivedOn('small').length, 0, 'nothing reached the app');
});

test('413 when a chunked body grows past the limit while streaming', async () => {
  const before = (await allEvents()).length;
  // Two chunks of 600 bytes (1,200 > 1,024), and no terminating chunk: the relay must decide
  // from what it counted so far, while the body is still open.
  const chunk = Buffer.alloc(600, 0x61);
  const res = await rawHttp((s) => {
    s.write(requestHead(ch('small'), ['Transfer-Encoding: chunked']));
    s.write(`${chunk.length.toString(16)}\r\n`);
    s.write(chunk);
    s.write('\r\n');
    s.write(`${chunk.length.toString(16)}\r\n`);
    s.write(chunk);
    s.write('\r\n');
  });
  assert.equal(res.status, 413, `${res.head}\n${res.body}`);
  assert.match(res.body, /ERR_BODY_TOO_LARGE/);
  assert.equal((await allEvents()).length, before, 'no event stored');
  assert.equal(receivedOn('small').length, 0, 'nothing reached the app');
});

test('a body of exactly maxBodyBytes is accepted, with Content-Length or chunked', async () => {
  const before = (await allEvents()).length;
  const fixed = Buffer.alloc(LIMIT, 0x62);
  const sized = await send(`/h/${ch('small')}/exact`, {
    headers: { 'content-type': 'application/octet-stream' },
    body: fixed,
  });
  assert.equal(sized.status, 202, sized.text);
  const sizedId = idOf(sized.text);

  const streamed = Buffer.alloc(LIMIT, 0x63);
  const chunked = await rawHttp((s) => {
    s.write(requestHead(ch('small'), ['Transfer-Encoding: chunked', 'Connection: close']));
    for (let at = 0; at < LIMIT; at += 256) {
      s.write(`100\r\n`);
      s.write(streamed.subarray(at, at + 256));
      s.write('\r\n');
    }
    s.write('0\r\n\r\n');
  });
  assert.equal(chunked.status, 202, `${chunked.head}\n${chunked.body}`);
  const chunkedId = idOf(chunked.body);

  assert.equal((await allEvents()).length, before + 2, 'both stored');
  assert.deepEqual((await arrival(sizedId)).body, fixed);
  assert.deepEqual((await arrival(chunkedId)).body, streamed);
  assert.equal(receivedOn('small').length, 2);
});

// ---- ingress: GitHub verification ------------------------------------------------------------

function githubSignature(body: Buffer, secret = GITHUB_SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

test('GitHub: a correct X-Hub-Signature-256 is accepted and delivered', async () => {
  const body = Buffer.from('{"zen":"Keep it logically awesome.","hook_id":1}');
  const res = await send(`/h/${ch('gh')}`, {
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'ping',
      'x-hub-signature-256': githubSignature(body),
    },
    body,
  });
  assert.equal(res.status, 202, res.text);
  const got = await arrival(idOf(res.text));
  assert.deepEqual(got.body, body);
  assert.equal(got.headers['x-hub-signature-256'], githubSignature(body));
});

/** Barrier requests sent so far (each one's body is new). */
let barriers = 0;

/** Sends each forged request, then a good one; only the good ones may be stored or arrive. */
async function expectRefused(cases: [string, Record<string, string>][]): Promise<void> {
  const eventsBefore = await allEvents();
  const knownIds = new Set(eventsBefore.map((e) => e.id));
  const ghBefore = receivedOn('gh').length;
  const body = Buffer.from('{"action":"opened","number":42}');
  const answers: string[] = [];
  for (const [what, headers] of cases) {
    const res = await send(`/h/${ch('gh')}`, {
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });
    answers.push(`${what}: ${res.status}${res.status === 401 ? '' : ` ${res.text}`}`);
    if (res.status === 401) assert.match(res.text, /ERR_SIGNATURE/, what);
  }
  assert.deepEqual(
    answers,
    cases.map(([what]) => `${what}: 401`),
    'every forged or malformed request is refused with 401',
  );
  // Each refusal is kept as a `rejected` record (metadata only): visible, never deliverable.
  const added = await eventually(
    async () => {
      const fresh = (await allEvents()).filter((e) => !knownIds.has(e.id));
      return fresh.length >= cases.length ? fresh : undefined;
    },
    20_000,
    'the refused requests to be recorded',
  );
  assert.deepEqual(
    added.map((e) => e.status),
    cases.map(() => 'rejected'),
    'every refused request is recorded as rejected, nothing else is stored',
  );
  for (const e of added) {
    const shown = await need(relay, 'relay').api<{ reason: string; body: string; size: number }>(
      'GET',
      `/api/events/${e.id}`,
    );
    assert.match(shown.reason, /^(missing|malformed)_signature$|^signature_mismatch$/);
    assert.equal(shown.body, '', 'no body is kept for a refused request');
    assert.equal(shown.size, body.length);
  }
  // A good request afterwards is the barrier: once it arrives, anything sent before it that
  // had been queued would have been dispatched ahead of it. Its body is new each time: the
  // same signed body again would be a replay, answered with the first id and not delivered.
  const barrier = Buffer.from(`{"action":"opened","number":42,"barrier":${++barriers}}`);
  const good = await send(`/h/${ch('gh')}`, {
    headers: {
      'content-type': 'application/json',
      'x-hub-signature-256': githubSignature(barrier),
    },
    body: barrier,
  });
  assert.equal(good.status, 202, good.text);
  const goodId = idOf(good.text);
  await arrival(goodId);
  assert.deepEqual(
    receivedOn('gh')
      .slice(ghBefore)
      .map((r) => eventIdOf(r)),
    [goodId],
    'only the correctly signed request reached the app',
  );
}

test('GitHub: a wrong or missing signature is refused with 401', async () => {
  const body = Buffer.from('{"action":"opened","number":42}');
  await expectRefused([
    ['signed with another secret', { 'x-hub-signature-256': githubSignature(body, 'wrong') }],
    [
      'signature of another body',
      { 'x-hub-signature-256': githubSignature(Buffer.from('{"action":"closed"}')) },
    ],
    ['no signature header', {}],
    ['only the legacy sha1 header', { 'x-hub-signature': 'sha1=0000' }],
  ]);
});

test('GitHub: a malformed signature header is refused with 401', async () => {
  const body = Buffer.from('{"action":"opened","number":42}');
  const good = githubSignature(body);
  const hex = good.slice('sha256='.length);
  await expectRefused([
    ['empty value', { 'x-hub-signature-256': '' }],
    ['no sha256= prefix', { 'x-hub-signature-256': hex }],
    ['sha1= prefix', { 'x-hub-signature-256': `sha1=${hex}` }],
    ['not hex', { 'x-hub-signature-256': 'sha256=not-a-hex-digest' }],
    ['prefix only', { 'x-hub-signature-256': 'sha256=' }],
    ['digest cut short', { 'x-hub-signature-256': `sha256=${hex.slice(0, 63)}` }],
    ['digest with trailing garbage', { 'x-hub-signature-256': `${good}zz` }],
    ['digest with a trailing odd nibble', { 'x-hub-signature-256': `${good}0` }],
  ]);
});

// ---- ingress: unknown channel ----------------------------------------------------------------

test('an unknown channel is 404 for POST, GET and a path with a suffix; nothing stored', async () => {
  const before = (await allEvents()).length;
  const received = need(app, 'app').received.length;
  const unknown = 'ch_0000000000000000000000000a';
  const cases: [string, string][] = [
    ['POST', `/h/${unknown}`],
    ['GET', `/h/${unknown}`],
    ['POST', `/h/${unknown}/github/push?x=1`],
    ['GET', `/h/${unknown}/a/b`],
    ['POST', '/h/not-a-channel-id'],
  ];
  for (const [method, p] of cases) {
    const res = await send(p, {
      method,
      ...(method === 'POST' ? { body: Buffer.from('{"a":1}') } : {}),
    });
    assert.equal(res.status, 404, `${method} ${p}: ${res.status} ${res.text}`);
  }
  assert.equal((await allEvents()).length, before, 'no event stored');
  assert.equal(need(app, 'app').received.length, received, 'nothing reached the app');
});

// ---- tunnel: malformed frames ----------------------------------------------------------------

/** A frame as `shared/codec.ts` lays it out: u32 JSON length, JSON text, body bytes. */
function rawFrame(json: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const fields = Buffer.from(json, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(fields.length, 0);
  return Buffer.concat([head, fields, body]);
}

/** Dials `/tunnel` with a fresh valid token, sends one thing, and returns how the relay closed. */
async function closeAfter(
  identity: TestIdentity,
  sendBad: (ws: WebSocket) => void,
): Promise<{ code: number; reason: string }> {
  const r = need(relay, 'relay');
  const { ws, status } = await dial(r.url, await mint(identity));
  assert.ok(ws, `the upgrade is accepted with a valid token (got ${status})`);
  sockets.push(ws);
  ws.on('error', () => {
    // Writing into a socket the relay closed may fail; the close code is what counts.
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve, reject) => {
    // Longer than the relay's hello timeout (10 s, close 4001), so ignoring the frame shows up.
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('the relay did not close the connection'));
    }, 15_000);
    ws.once('close', (code: number, reason: Buffer) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
  sendBad(ws);
  return closed;
}

test('malformed tunnel frames close the connection with the right code; the relay keeps serving', async () => {
  const r = need(relay, 'relay');
  const a = need(app, 'app');
  const identity = await loadIdentity(need(tunnelStateDir, 'tunnel agent'));
  const hello = JSON.stringify({ type: 'hello', protocol: 1, agentVersion: 'test' });
  const cases: [string, number, (ws: WebSocket) => void][] = [
    ['a text frame (holding a valid hello)', 1002, (ws) => ws.send(hello, { binary: false })],
    ['a binary frame of 3 bytes', 1002, (ws) => ws.send(Buffer.from([0, 0, 1]))],
    ['fields that are not JSON', 1002, (ws) => ws.send(rawFrame('{"type":"hello",'))],
    ['fields that are JSON but not an object', 1002, (ws) => ws.send(rawFrame('[1,2]'))],
    [
      'a JSON length past the end of the frame',
      1002,
      (ws) => ws.send(Buffer.concat([Buffer.from([0, 0, 0x10, 0]), Buffer.from(hello)])),
    ],
    [
      'an unknown frame type',
      1002,
      (ws) => ws.send(rawFrame(JSON.stringify({ type: 'subscribe', channel: '*' }))),
    ],
    [
      'a relay-only frame type (deliver) from the agent',
      1002,
      (ws) => ws.send(rawFrame(JSON.stringify({ type: 'deliver', eventId: 'evt_x' }))),
    ],
    [
      'an ack before hello',
      1002,
      (ws) =>
        ws.send(
          rawFrame(
            JSON.stringify({
              type: 'ack',
              eventId: 'evt_00000000000000000000000000',
              outcome: 'delivered',
              durationMs: 1,
            }),
          ),
        ),
    ],
    [
      'a hello with protocol 99',
      4000,
      (ws) => ws.send(rawFrame(JSON.stringify({ type: 'hello', protocol: 99, agentVersion: 't' }))),
    ],
    [
      `a frame of MAX_AGENT_FRAME_BYTES + 1 (${MAX_AGENT_FRAME_BYTES + 1} bytes)`,
      1009,
      (ws) => ws.send(Buffer.alloc(MAX_AGENT_FRAME_BYTES + 1)),
    ],
  ];
  for (const [what, expected, sendBad] of cases) {
    const { code, reason } = await closeAfter(identity, sendBad);
    assert.equal(code, expected, `${what}: closed with ${code} "${reason}", expected ${expected}`);
  }
  assert.equal(r.proc.child.exitCode, null, 'the relay process is still running');

  const health = await send('/healthz', { method: 'GET' });
  assert.equal(health.status, 200, health.text);

  // The same agent identity still connects and delivers end to end.
  const stateDir = need(tunnelStateDir, 'tunnel agent');
  tunnelAgent = await startAgent(stateDir, [{ channel: 'tunnel', target: `${a.url}/tunnel` }]);
  const body = Buffer.from('{"after":"malformed frames"}');
  const res = await send(`/h/${ch('tunnel')}/x`, {
    headers: { 'content-type': 'application/json' },
    body,
  });
  assert.equal(res.status, 202, res.text);
  const got = await arrival(idOf(res.text));
  assert.deepEqual(got.body, body);
  assert.equal(got.url, '/tunnel/x');
  // The long-running agent was not disturbed either.
  const plainBody = Buffer.from('{"after":"malformed frames","agent":"main"}');
  const plain = await send(`/h/${ch('plain')}`, { body: plainBody });
  assert.equal(plain.status, 202, plain.text);
  assert.deepEqual((await arrival(idOf(plain.text))).body, plainBody);
  await tunnelAgent.stop();
  tunnelAgent = undefined;
});

// ---- agent: bad config, not paired ---------------------------------------------------------

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tsx agent/main.ts ARGS` from the repository root, as a user would. */
function runAgentCli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ['agent/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, POSTERN_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`agent did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('an agent with a bad config exits 1 naming the file, the field and what was expected', async () => {
  const r = need(relay, 'relay');
  const stateDir = need(cfgStateDir, 'cfg agent');
  const sent = await send(`/h/${ch('cfg')}`, { body: Buffer.from('{"cfg":1}') });
  assert.equal(sent.status, 202, sent.text);
  const eventId = idOf(sent.text);

  const notUrl = path.join(stateDir, 'not-a-url.yaml');
  await writeFile(notUrl, 'routes:\n  - channel: cfg\n    target: not a url\n');
  const badYaml = path.join(stateDir, 'bad-yaml.yaml');
  await writeFile(badYaml, 'routes:\n  - channel: cfg\n    target: [http://127.0.0.1:1/x\n');
  const missing = path.join(stateDir, 'does-not-exist.yaml');

  const cases: [string, string, RegExp[]][] = [
    [
      'a route target that is not a URL',
      notUrl,
      [/routes\[0\]\.target/, /expected an absolute http\(s\) URL/, /not a url/],
    ],
    ['invalid YAML', badYaml, [/not valid YAML/, /line \d+/]],
    ['a missing file', missing, [/cannot read the config file/, /ENOENT/]],
  ];
  for (const [what, file, patterns] of cases) {
    const res = await runAgentCli(['run', '--config', file, '--state-dir', stateDir]);
    assert.equal(res.code, 1, `${what}: exit code ${res.code}\n${res.stderr}`);
    assert.ok(res.stderr.includes(file), `${what}: stderr names ${file}: ${res.stderr}`);
    for (const p of patterns) assert.match(res.stderr, p, `${what}: ${res.stderr}`);
    assert.doesNotMatch(res.stderr, /\n\s+at /, `${what}: a message, not a stack trace`);
  }

  const agents = await r.api<{
    agents: { name: string; connected: boolean; version: string | null }[];
  }>('GET', '/api/agents');
  const cfgAgent = agents.agents.find((x) => x.name === 'cfg-agent');
  assert.ok(cfgAgent);
  assert.equal(cfgAgent.connected, false);
  assert.equal(cfgAgent.version, null, 'the agent never connected');
  const event = await r.api<EventView>('GET', `/api/events/${eventId}`);
  assert.equal(event.status, 'queued');
  assert.equal(event.attemptCount, 0);
  assert.equal(receivedOn('cfg').length, 0, 'nothing delivered');
});

test('an agent that is not paired exits 1 and says to pair first', async () => {
  const empty = await tempDir('postern-unpaired-');
  dirs.push(empty);
  const config = path.join(empty, 'agent.yaml');
  await writeFile(
    config,
    JSON.stringify({ routes: [{ channel: 'cfg', target: 'http://127.0.0.1:1/x' }] }),
  );
  const res = await runAgentCli(['run', '--config', config, '--state-dir', empty]);
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stderr, /pair first/);
  // The command to pair, as this agent was started (tsx on agent/main.ts) and with its state dir.
  assert.ok(
    res.stderr.includes(
      `pair first: node --import tsx agent/main.ts pair --relay URL --code CODE --state-dir ${empty}\n`,
    ),
    res.stderr,
  );
  assert.equal(receivedOn('cfg').length, 0, 'nothing delivered');
});
