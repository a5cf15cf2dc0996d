/**
 * The agent's command line as a user meets it: `run --route CHANNEL=URL` without a file, bad
 * flags refused in one line, SIGHUP reloading the config file (a bad file refused, the old
 * routes kept; a delivery in flight finishes), a reload that routes a parked channel making the
 * agent reconnect, `pair` refusing to replace an identity without `--force`, and the printed
 * next steps working as printed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after } from 'node:test';
import { request } from 'undici';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  Proc,
  removeDir,
  ROOT,
  startRelay,
  tempDir,
  waitForEventStatus,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const AGENT = path.join(ROOT, 'agent/main.ts');
const ONCE = { embeddedOnly: 'agent-side behaviour: the store plays no part' };

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

let shared: Promise<RelayHandle> | undefined;
/** One relay for the whole file, started by the first test that needs it. */
function relay(): Promise<RelayHandle> {
  shared ??= (async () => {
    const dataDir = await tempDir();
    cleanups.push(() => removeDir(dataDir));
    const r = await startRelay({ dataDir });
    cleanups.push(() => r.stop());
    return r;
  })();
  return shared;
}

async function app(): Promise<TestApp> {
  const a = await startApp();
  cleanups.push(() => a.close());
  return a;
}

async function channel(r: RelayHandle, name: string): Promise<string> {
  return (await r.api<{ id: string }>('POST', '/api/channels', { name })).id;
}

async function send(r: RelayHandle, channelId: string, body: string): Promise<string> {
  const res = await request(`${r.url}/h/${channelId}/x`, { method: 'POST', body });
  const text = await res.body.text();
  assert.equal(res.statusCode, 202, text);
  return (JSON.parse(text) as { id: string }).id;
}

/** Runs the agent binary to its end; returns exit code, stdout and stderr. */
function runAgent(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCommand(process.execPath, ['--import', 'tsx', AGENT, ...args], env);
}

function runCommand(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(file, args, { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

function startRun(args: string[]): Proc {
  const proc = new Proc([AGENT, 'run', '--log-level', 'debug', ...args], {});
  cleanups.push(() => proc.kill());
  return proc;
}

test('run --route CHANNEL=URL delivers without a config file, channel by name', ONCE, async () => {
  const r = await relay();
  const target = await app();
  const id = await channel(r, 'flag-routes');
  const { stateDir } = await pairAgent(r, [id], 'flag-agent');
  cleanups.push(() => removeDir(stateDir));
  const agent = startRun(['--state-dir', stateDir, '--route', `flag-routes=${target.url}/in`]);
  await agent.waitForMsg('connected to the relay');
  const eventId = await send(r, id, 'by flag');
  await waitForEventStatus(r, eventId, 'delivered');
  assert.equal(target.received.length, 1);
  assert.equal(target.received[0]?.url, '/in/x');
  assert.equal(target.received[0]?.body.toString(), 'by flag');
});

test('bad --route flags and a run without routes are refused in one line', ONCE, async () => {
  const dir = await tempDir('postern-agent-');
  cleanups.push(() => removeDir(dir));
  const cases: [string[], string][] = [
    [
      ['--route', 'github'],
      'postern-agent: --route "github": expected CHANNEL=URL, e.g. --route github=http://127.0.0.1:3000/hooks\n',
    ],
    [
      ['--route', 'github=localhost:3000'],
      'postern-agent: --route "github=localhost:3000": target: expected an http:// or https:// URL, got "localhost:3000"\n',
    ],
    [
      ['--route', 'github=http://127.0.0.1:3000/?a=1'],
      'postern-agent: --route "github=http://127.0.0.1:3000/?a=1": target: expected a URL without query, fragment or credentials, got "http://127.0.0.1:3000/?a=1"\n',
    ],
    [[], 'postern-agent: run needs --config FILE or --route CHANNEL=URL\n'],
  ];
  for (const [args, expected] of cases) {
    const res = await runAgent(['run', '--state-dir', dir, ...args]);
    assert.equal(res.code, 1, `${args.join(' ')}: ${res.stderr}`);
    assert.equal(res.stderr, expected);
    assert.equal(res.stdout, '');
  }
});

test(
  'SIGHUP reloads the config file; a bad file is refused and the old routes stay; a delivery in flight finishes',
  ONCE,
  async () => {
    const r = await relay();
    const first = await app();
    const second = await app();
    const id = await channel(r, 'reloads');
    const { stateDir } = await pairAgent(r, [id], 'reload-agent');
    cleanups.push(() => removeDir(stateDir));
    const file = path.join(stateDir, 'agent.yaml');
    const routesTo = (url: string) => `routes:\n  - channel: reloads\n    target: ${url}\n`;
    await writeFile(file, routesTo(`${first.url}/one`));
    const agent = startRun(['--config', file, '--state-dir', stateDir]);
    await agent.waitForMsg('connected to the relay');

    // The first app holds its answer until after the reload.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    first.respond = async (_req, res) => {
      await held;
      res.end('ok');
    };
    const inFlight = await send(r, id, 'in flight');
    await first.waitFor(1);

    await writeFile(file, routesTo('localhost:3000'));
    let from = agent.lines.length;
    agent.child.kill('SIGHUP');
    const refused = await agent.waitFor(
      (l) => /config reload refused/.test(String(l.msg)),
      20_000,
      from,
    );
    assert.equal(
      refused.msg,
      `config reload refused, the running config stays: ${file}: routes[0].target: expected an http:// or https:// URL, got "localhost:3000"`,
    );
    assert.equal(refused['file'], file);

    await writeFile(file, routesTo(`${second.url}/two`));
    from = agent.lines.length;
    agent.child.kill('SIGHUP');
    const reloaded = await agent.waitFor(
      (l) => String(l.msg).startsWith('reloaded '),
      20_000,
      from,
    );
    assert.equal(reloaded.msg, `reloaded ${file}: 1 route(s)`);
    assert.equal(reloaded['inFlight'], 1);

    // The delivery that started on the old route ends there, once, and is acknowledged.
    release();
    await waitForEventStatus(r, inFlight, 'delivered');
    assert.equal(first.received.length, 1);

    const after = await send(r, id, 'after reload');
    await waitForEventStatus(r, after, 'delivered');
    assert.equal(second.received.length, 1);
    assert.equal(second.received[0]?.url, '/two/x');
    assert.equal(second.received[0]?.body.toString(), 'after reload');
    assert.equal(first.received.length, 1);
    assert.equal(agent.child.exitCode, null, 'the agent kept running');
  },
);

test(
  'a reload that routes a granted channel without a route reconnects, and its parked event is delivered',
  ONCE,
  async () => {
    const r = await relay();
    const target = await app();
    const routed = await channel(r, 'routed');
    const parked = await channel(r, 'parked');
    const { stateDir } = await pairAgent(r, [routed, parked], 'parking-agent');
    cleanups.push(() => removeDir(stateDir));
    const file = path.join(stateDir, 'agent.yaml');
    await writeFile(file, `routes:\n  - channel: routed\n    target: ${target.url}/r\n`);
    const agent = startRun(['--config', file, '--state-dir', stateDir]);
    await agent.waitForMsg('connected to the relay');

    const eventId = await send(r, parked, 'parked');
    await eventually(
      async () => {
        const e = await r.api('GET', `/api/events/${eventId}`);
        return e.attempts?.some((a: { outcome: string }) => a.outcome === 'no_route')
          ? e
          : undefined;
      },
      20_000,
      'a no_route attempt',
    );
    await writeFile(
      file,
      `routes:\n  - channel: routed\n    target: ${target.url}/r\n  - channel: parked\n    target: ${target.url}/p\n`,
    );
    const from = agent.lines.length;
    agent.child.kill('SIGHUP');
    await agent.waitForMsg('reconnecting to the relay (routes changed)', 20_000, from);
    await agent.waitForMsg('connected to the relay', 20_000, from);
    // Delivered at the latest on the relay's parked retry.
    await waitForEventStatus(r, eventId, 'delivered', 60_000);
    assert.deepEqual(
      target.received.map((q) => [q.url, q.body.toString()]),
      [['/p/x', 'parked']],
    );
  },
);

test(
  'pair refuses to replace an identity without --force, and its code stays usable',
  ONCE,
  async () => {
    const r = await relay();
    const id = await channel(r, 'pairs');
    const { stateDir, agentId } = await pairAgent(r, [id], 'first-agent');
    cleanups.push(() => removeDir(stateDir));
    const before = await readFile(path.join(stateDir, 'identity.json'), 'utf8');
    const second = await r.api<{ id: string; pairingCode: string }>('POST', '/api/agents', {
      name: 'second-agent',
      channels: [id],
    });
    const args = ['pair', '--relay', r.url, '--code', second.pairingCode, '--state-dir', stateDir];
    const refused = await runAgent(args);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      `postern-agent: ${stateDir} already holds the identity of agent first-agent (${agentId}); pairing would replace it: use another --state-dir, or add --force to replace it (the code is not spent)\n`,
    );
    assert.equal(await readFile(path.join(stateDir, 'identity.json'), 'utf8'), before);

    const forced = await runAgent([...args, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    const now = JSON.parse(await readFile(path.join(stateDir, 'identity.json'), 'utf8'));
    assert.equal(now.agentId, second.id);
    assert.equal(now.name, 'second-agent');
  },
);

test(
  'the next steps pair prints work as printed: state dir and program name included',
  ONCE,
  async () => {
    const r = await relay();
    const target = await app();
    const id = await channel(r, 'next-steps');
    const added = await r.api<{ id: string; pairingCode: string }>('POST', '/api/agents', {
      name: 'next-agent',
      channels: [id],
    });
    const stateDir = await tempDir('postern-agent-');
    cleanups.push(() => removeDir(stateDir));
    const paired = await runAgent([
      'pair',
      '--relay',
      r.url,
      '--code',
      added.pairingCode,
      '--state-dir',
      stateDir,
    ]);
    assert.equal(paired.code, 0, paired.stderr);
    const program = 'node --import tsx agent/main.ts';
    const runLine = paired.stdout
      .split('\n')
      .find((l) => l.includes(' run ') && l.includes('--route'));
    assert.equal(
      runLine,
      `  ${program} run --state-dir ${stateDir} --route next-steps=http://127.0.0.1:3000/`,
    );
    assert.ok(
      paired.stdout.includes(`  ${program} run --state-dir ${stateDir} --config agent.yaml\n`),
    );

    // The printed command, with the app's URL put after the `=` as the line says, runs the agent.
    const command = runLine!.trim().replace('http://127.0.0.1:3000/', `${target.url}/`);
    const agent = new Proc([], {}, ROOT, ['/bin/sh', '-c', `exec ${command}`]);
    cleanups.push(() => agent.kill());
    await agent.waitForMsg('connected to the relay');
    const eventId = await send(r, id, 'as printed');
    await waitForEventStatus(r, eventId, 'delivered');
    assert.equal(target.received[0]?.body.toString(), 'as printed');

    // Without an identity, the hint to pair names the same program and state dir.
    const empty = await tempDir('postern-agent-');
    cleanups.push(() => removeDir(empty));
    const missing = await runAgent(['run', '--state-dir', empty, '--route', `x=${target.url}`]);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      `postern-agent: ${empty}: no agent identity here; pair first: ${program} pair --relay URL --code CODE --state-dir ${empty}\n`,
    );
    const viaNpm = await runAgent(['run', '--state-dir', empty, '--route', `x=${target.url}`], {
      npm_lifecycle_event: 'agent',
    });
    assert.match(
      viaNpm.stderr,
      /pair first: npm run agent -- pair --relay URL --code CODE --state-dir /,
    );
  },
);
