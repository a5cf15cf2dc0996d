/**
 * The command lines in a shell: `--help` on every subcommand, one-line errors naming the
 * nearest command or flag, URLs without a scheme, names where ids are, `events show` decoded
 * (the why-waiting line, headers as a table, JSON pretty, binary as a hex dump, each attempt's
 * answer and replay marker), `--raw` and `--json` with nothing else on stdout, and the
 * package's bin entries. Event rendering runs against a stub of the admin API serving fixtures
 * in the shared shapes; names against a real relay.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, eventually, removeDir, startRelay, type RelayHandle } from '../helpers/processes.ts';
import { test as storeTest } from '../helpers/store.ts';

const run = promisify(execFile);
const TOKEN = 'stub-admin-token-0000000001';

interface Result {
  stdout: string;
  stderr: string;
  code: number;
  bytes: Buffer;
}

async function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', file, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      encoding: 'buffer',
      timeout: 60_000,
    });
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), code: 0, bytes: r.stdout };
  } catch (err) {
    const e = err as { stdout: Buffer; stderr: Buffer; code: number };
    return {
      stdout: e.stdout.toString(),
      stderr: e.stderr.toString(),
      code: e.code,
      bytes: e.stdout,
    };
  }
}

const relayCli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  exec(path.join(ROOT, 'server/main.ts'), args, env);
const agentCli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  exec(path.join(ROOT, 'agent/main.ts'), args, env);

// --- a stub of the admin API ------------------------------------------------------------

const JSON_BODY = '{"action":"opened","n":1}';
const BINARY = Buffer.from([0x00, 0x01, 0xff, 0xfe, 0x80, 0x41, 0x42, 0x00, 0x10]);

const CHANNEL = {
  id: 'ch_one',
  name: 'github',
  ingressUrl: 'https://hooks.example.com/h/ch_one',
  verify: { provider: 'hmac', rotating: true, header: 'X-Sig', algorithm: 'sha256' },
  response: { mode: 'sync', timeoutMs: 5000 },
  retry: { delaysMs: [5000, 300000, 7200000] },
  ordered: true,
  orderingKey: { jsonField: 'repo.id' },
  rateLimit: { perSecond: 10, burst: 20 },
  maxBodyBytes: 1048576,
  methods: ['POST'],
  paths: null,
  createdAt: '2026-01-01T00:00:00.000Z',
};

const EVENTS: Record<string, unknown> = {
  evt_queued: {
    id: 'evt_queued',
    channelId: 'ch_one',
    status: 'queued',
    receivedAt: '2026-01-01T00:00:00.000Z',
    method: 'POST',
    path: '/push',
    query: 'a=1',
    size: JSON_BODY.length,
    attemptCount: 1,
    nextAttemptAt: '2026-01-01T00:01:00.000Z',
    waiting: {
      reason: 'retry',
      message: 'waiting for a retry at 00:01:00 after: app answered 500',
      retryAt: 1767225660000,
      lastError: 'app answered 500',
    },
    attempts: [
      {
        at: '2026-01-01T00:00:01.000Z',
        agentId: 'ag_one',
        outcome: 'failed',
        status: 500,
        durationMs: 12,
        error: 'app answered 500',
        response: {
          headers: [
            ['content-type', 'application/json'],
            ['x-app', 'demo'],
          ],
          body: Buffer.from('{"error":"database is down"}').toString('base64'),
          bodyBytes: 4096,
          truncated: true,
        },
      },
      {
        at: '2026-01-01T00:00:30.000Z',
        agentId: 'ag_one',
        outcome: 'failed',
        status: 502,
        durationMs: 3,
        error: 'app answered 502',
        replay: 1,
      },
    ],
    originalUrl: 'https://hooks.example.com/h/ch_one/push?a=1',
    remoteAddress: '192.0.2.7',
    headers: [
      ['content-type', 'application/json'],
      ['x-github-event', 'push'],
    ],
    body: Buffer.from(JSON_BODY).toString('base64'),
  },
  evt_binary: {
    id: 'evt_binary',
    channelId: 'ch_one',
    status: 'delivered',
    receivedAt: '2026-01-01T00:00:00.000Z',
    method: 'PUT',
    path: '',
    query: '',
    size: BINARY.length,
    attemptCount: 1,
    nextAttemptAt: null,
    attempts: [],
    originalUrl: 'https://hooks.example.com/h/ch_one',
    remoteAddress: '192.0.2.7',
    headers: [['content-type', 'application/octet-stream']],
    body: BINARY.toString('base64'),
  },
};

let stub: Server;
let stubUrl: string;

before(async () => {
  stub = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return send(401, {
        error: { code: 'ERR_UNAUTHORIZED', message: 'admin token missing or wrong' },
      });
    }
    const url = new URL(req.url ?? '/', 'http://stub');
    if (url.pathname === '/api/channels') {
      return send(200, { channels: [{ id: 'ch_one', name: 'github' }] });
    }
    if (url.pathname === '/api/agents') {
      return send(200, { agents: [{ id: 'ag_one', name: 'laptop', channels: ['ch_one'] }] });
    }
    if (url.pathname === '/api/events') {
      // ?limit=500: a page long enough to fill a pipe (500 copies of the first fixture).
      const many = url.searchParams.get('limit') === '500';
      const events = many ? Array(500).fill(EVENTS['evt_queued']) : Object.values(EVENTS);
      return send(200, { events, next: null });
    }
    if (url.pathname === '/api/channels/github') return send(200, CHANNEL);
    const one = /^\/api\/events\/([\w]+)$/.exec(url.pathname);
    if (one && EVENTS[one[1]!]) return send(200, EVENTS[one[1]!]);
    send(404, { error: { code: 'ERR_NOT_FOUND', message: 'no such event' } });
  });
  await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
  stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((resolve) => stub.close(() => resolve())));

const toStub = () => ({ POSTERN_RELAY_URL: stubUrl, POSTERN_ADMIN_TOKEN: TOKEN });

test('events show: why it waits, headers as a table, the body decoded, each attempt and its answer', async () => {
  const r = await relayCli(['events', 'show', 'evt_queued'], toStub());
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Channel\s+github \(ch_one\)$/m);
  assert.match(r.stdout, /^Waiting\s+waiting for a retry at 00:01:00 after: app answered 500$/m);
  assert.match(
    r.stdout,
    /^Headers:\n\s+NAME\s+VALUE\n\s+content-type\s+application\/json\n\s+x-github-event\s+push$/m,
  );
  // The body pretty-printed, not base64.
  assert.ok(r.stdout.includes('  {\n    "action": "opened",\n    "n": 1\n  }\n'), r.stdout);
  assert.equal(r.stdout.includes(Buffer.from(JSON_BODY).toString('base64')), false);
  // Attempts: agent by name, the original delivery and the replay marked, the answer shown.
  assert.match(
    r.stdout,
    /Attempts \(2; 1 since the last replay count against the retry schedule\)/,
  );
  assert.match(r.stdout, /#1 .* failed\s+HTTP 500\s+agent laptop\s+12 ms\s+\[original\]/);
  assert.match(r.stdout, /#2 .* failed\s+HTTP 502\s+agent laptop\s+3 ms\s+\[replay 1\]/);
  assert.match(
    r.stdout,
    /response headers:\n\s+NAME\s+VALUE\n\s+content-type\s+application\/json\n\s+x-app\s+demo/,
  );
  assert.match(
    r.stdout,
    /response body \(first 28 of 4096 bytes\):\n\s+\{\n\s+"error": "database is down"\n\s+\}/,
  );
});

test('events show: a binary body as a hex dump; --raw prints the exact bytes; --json only JSON', async () => {
  const r = await relayCli(['events', 'show', 'evt_binary'], toStub());
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /00000000 {2}00 01 ff fe 80 41 42 00 {2}10 {23}\|\.\.\.\.\.AB\.\.\|/);
  const raw = await relayCli(['events', 'show', 'evt_binary', '--raw'], toStub());
  assert.equal(raw.code, 0, raw.stderr);
  assert.deepEqual(raw.bytes, BINARY);
  const json = await relayCli(['events', 'show', 'evt_queued', '--json'], toStub());
  assert.deepEqual(JSON.parse(json.stdout), EVENTS['evt_queued']);
});

test('events list: channel names and the why-waiting line', async () => {
  const r = await relayCli(['events', 'list'], toStub());
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^ID\s+RECEIVED\s+CHANNEL\s+STATUS\s+ATTEMPTS\s+METHOD\s+PATH\s+SIZE\s+WAITING$/m,
  );
  assert.match(
    r.stdout,
    /^evt_queued\s+\S+\s+github\s+queued\s+1\s+POST\s+\/push\?a=1\s+25\s+waiting for a retry at 00:01:00 after: app answered 500$/m,
  );
  assert.match(r.stdout, /^evt_binary\s+\S+\s+github\s+delivered\s+1\s+PUT\s+\/\s+9$/m);
});

test('channel show: the settings one per line; --json the resource', async () => {
  const r = await relayCli(['channel', 'show', 'github'], toStub());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      'Channel:      github (ch_one)',
      'Ingress URL:  https://hooks.example.com/h/ch_one',
      'Verify:       hmac (header X-Sig, algorithm sha256); rotating (a previous secret is accepted too)',
      "Response:     sync: the provider waits up to 5 s for the app's answer",
      'Retries:      3: 5 s, 5 min, 2 h',
      'Ordering:     ordered, key from JSON field repo.id',
      'Rate limit:   10/s, burst 20',
      'Largest body: 1048576 bytes',
      'Methods:      POST',
      'Paths:        any',
      'Created:      2026-01-01T00:00:00.000Z',
      '',
    ].join('\n'),
  );
  const j = await relayCli(['channel', 'show', 'github', '--json'], toStub());
  assert.deepEqual(JSON.parse(j.stdout), CHANNEL);
});

test('a reader that goes away (| head) ends the command quietly', async () => {
  const r = await run(
    '/bin/bash',
    [
      '-c',
      `set -o pipefail; "${process.execPath}" --import tsx server/main.ts events list --limit 500 | head -1`,
    ],
    { cwd: ROOT, env: { ...process.env, ...toStub() } },
  );
  assert.match(r.stdout, /^ID\s+RECEIVED/);
  assert.equal(r.stderr, '');
});

test('--help on every subcommand, for both programs', async () => {
  const commands = [
    ['serve'],
    ['migrate'],
    ['tail'],
    ['channel'],
    ...['create', 'update', 'list', 'show', 'delete'].map((s) => ['channel', s]),
    ...['add', 'update', 'code', 'list', 'revoke'].map((s) => ['agent', s]),
    ...['list', 'show', 'replay', 'skip'].map((s) => ['events', s]),
  ];
  for (const words of commands) {
    const r = await relayCli([...words, '--help'], { POSTERN_RELAY_URL: 'http://127.0.0.1:1' });
    assert.equal(r.code, 0, `${words.join(' ')} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: \\S.* ${words.join(' ')}`), words.join(' '));
    assert.equal(r.stderr, '');
  }
  const all = await agentCli(['--help']);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /^Usage: .*<command>/);
  for (const word of ['pair', 'run']) {
    const r = await agentCli([word, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Usage: \\S.* ${word} `), word);
    assert.doesNotMatch(r.stdout, word === 'pair' ? /\brun\b/ : /\bpair\b/, word);
  }
});

test('an unknown command or flag: one line naming it and the nearest valid one', async () => {
  const cases: [Result, RegExp][] = [
    [
      await relayCli(['agent', 'start']),
      /^postern-relay: unknown command "agent start"; did you mean "agent \w+"\? \(.* --help lists them\)\n$/,
    ],
    [
      await relayCli(['chanel', 'list']),
      /^postern-relay: unknown command "chanel"; did you mean "channel"\?/,
    ],
    [
      await relayCli(['tail', '--chanel', 'x']),
      /^postern-relay: tail: unknown flag --chanel; did you mean --channel\? \(.*tail --help\)\n$/,
    ],
    [
      // `channel list` takes no channel: the near flag is another command's, named as such.
      await relayCli(['channel', 'list', '--chanel', 'x']),
      /^postern-relay: channel list: unknown flag --chanel; --channel is not a flag of this command \(.*channel list --help\)\n$/,
    ],
    [
      // Nothing near: no suggestion rather than a misleading one.
      await relayCli(['channel', 'list', '--zzzzzz']),
      /^postern-relay: channel list: unknown flag --zzzzzz \(.*channel list --help\)\n$/,
    ],
    [
      await relayCli(['events', 'list', '--stauts', 'failed']),
      /^postern-relay: events list: unknown flag --stauts; did you mean --status\?/,
    ],
    [
      await relayCli(['serve', '--prot', '1']),
      /^postern-relay: serve: unknown flag --prot; did you mean --port\?/,
    ],
    [
      await relayCli(['events', 'list', '--limit']),
      /^postern-relay: events list: --limit needs a value/,
    ],
    [await agentCli(['start']), /^postern-agent: unknown command "start"; did you mean "\w+"\?/],
    [
      await agentCli(['pair', '--relya', 'x']),
      /^postern-agent: pair: unknown flag --relya; did you mean --relay\?/,
    ],
  ];
  for (const [r, expected] of cases) {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, expected);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.equal(r.stdout, '', 'nothing on stdout');
  }
});

test('a URL without a scheme, an unreachable relay: one line that says what to do', async () => {
  const noScheme = await relayCli(['channel', 'list', '--relay', 'localhost:8080'], {
    POSTERN_ADMIN_TOKEN: TOKEN,
  });
  assert.equal(
    noScheme.stderr,
    'postern-relay: --relay: expected an http(s) URL such as http://localhost:8080, got "localhost:8080" (did you mean http://localhost:8080?)\n',
  );
  const pair = await agentCli([
    'pair',
    '--relay',
    'localhost:8080',
    '--code',
    'AAAA-BBBB-CCCC',
    '--state-dir',
    '/nonexistent/never-written',
  ]);
  assert.equal(pair.code, 1);
  assert.match(
    pair.stderr,
    /^postern-agent: --relay: expected an http\(s\) URL .* \(did you mean http:\/\/localhost:8080\?\)\n$/,
  );
  const down = await relayCli(['events', 'list'], {
    POSTERN_RELAY_URL: 'http://127.0.0.1:1',
    POSTERN_ADMIN_TOKEN: TOKEN,
  });
  assert.equal(down.code, 1);
  assert.match(
    down.stderr,
    /^postern-relay: cannot reach the relay at http:\/\/127\.0\.0\.1:1 \(connection refused\): is it running\? Start it with "serve", or point --relay \/ POSTERN_RELAY_URL at it\n$/,
  );
});

test('the package bin entries exist and run', async () => {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
    bin: Record<string, string>;
  };
  assert.deepEqual(Object.keys(pkg.bin).sort(), ['postern-agent', 'postern-relay']);
  for (const [name, file] of Object.entries(pkg.bin)) {
    const r = await run(process.execPath, [path.join(ROOT, file), '--version'], { cwd: ROOT });
    assert.equal(r.stdout.trim(), pkg.version, name);
    const help = await run(process.execPath, [path.join(ROOT, file), '--help'], { cwd: ROOT });
    assert.match(help.stdout, new RegExp(`^Usage: \\./bin/${name}\\.mjs <command>`), name);
  }
});

// --- names against a real relay ----------------------------------------------------------

let relay: RelayHandle | undefined;

after(async () => {
  await relay?.stop();
  if (relay) await removeDir(relay.dataDir);
});

storeTest(
  'agents by name wherever ids are taken; a shared name is refused with the ids; next steps name the state dir',
  async () => {
    relay = await startRelay();
    const started = relay;
    // The relay's own first step works as printed, from a shell with nothing set.
    const tryLine = await eventually(
      () => started.proc.raw.find((l) => l.startsWith('Try: ')),
      20_000,
      'the first admin command in the banner',
    );
    assert.match(
      tryLine,
      /^Try: npm run relay -- channel list --relay http:\/\/127\.0\.0\.1:\d+ --token-file \S+admin-token$/,
    );
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) => !k.startsWith('POSTERN_') && !k.startsWith('npm_'),
      ),
    );
    const tried = await run('/bin/sh', ['-c', tryLine.slice('Try: '.length)], {
      cwd: ROOT,
      env: clean,
    });
    assert.match(tried.stdout, /^\(none\)$/m);
    const env = { POSTERN_RELAY_URL: relay.url, POSTERN_ADMIN_TOKEN: relay.token };
    assert.equal((await relayCli(['channel', 'create', 'names-a'], env)).code, 0);
    assert.equal((await relayCli(['channel', 'create', 'names-b'], env)).code, 0);
    const added = await relayCli(['agent', 'add', 'laptop', '--channel', 'names-a'], env);
    assert.equal(added.code, 0, added.stderr);
    assert.match(
      added.stdout,
      / pair --relay http:\/\/localhost:\d+ --code [A-Z0-9-]+ --state-dir \.\/agent-state\n/,
    );
    assert.match(added.stdout, / run --config agent\.yaml --state-dir \.\/agent-state\n/);

    const updated = await relayCli(['agent', 'update', 'laptop', '--channel', 'names-b'], env);
    assert.equal(updated.code, 0, updated.stderr);
    assert.equal(updated.stdout, 'Agent laptop now has channels names-b\n');
    const code = await relayCli(['agent', 'code', 'laptop'], env);
    assert.equal(code.code, 0, code.stderr);
    assert.match(code.stdout, /^New pairing code for agent laptop \(ag_\w+\)/);

    await relayCli(['agent', 'add', 'laptop', '--channel', 'names-a'], env);
    const ambiguous = await relayCli(['agent', 'revoke', 'laptop'], env);
    assert.equal(ambiguous.code, 1);
    assert.match(
      ambiguous.stderr,
      /^postern-relay: 2 agents are named "laptop" \(ag_\w+, ag_\w+\): give the id\n$/,
    );
    const missing = await relayCli(['agent', 'revoke', 'desktop'], env);
    assert.match(missing.stderr, /no agent with the id or name "desktop"/);
    const listed = JSON.parse((await relayCli(['agent', 'list', '--json'], env)).stdout) as {
      agents: { id: string; name: string }[];
    };
    assert.equal(listed.agents.length, 2, 'nothing was revoked');
    const revoked = await relayCli(['agent', 'revoke', listed.agents[0]!.id], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    const gone = await relayCli(['agent', 'revoke', 'laptop'], env);
    assert.equal(gone.code, 0, `one agent named laptop is left: ${gone.stderr}`);
  },
);
