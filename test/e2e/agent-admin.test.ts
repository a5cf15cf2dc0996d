/**
 * Managing a paired agent: changing its channels (its sessions reconnect with the new
 * grants) and pairing it again with a new code (the old key is refused from then on).
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { request } from 'undici';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  Proc,
  ROOT,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { dial, loadIdentity, mint } from '../helpers/tokens.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle;
let agentId: string;
const dirs: string[] = [];

before(async () => {
  app = await startApp();
  relay = await startRelay();
  await relay.api('POST', '/api/channels', { name: 'first' });
  await relay.api('POST', '/api/channels', { name: 'second' });
  const paired = await pairAgent(relay, ['first']);
  agentId = paired.agentId;
  dirs.push(paired.stateDir);
  agent = await startAgent(paired.stateDir, [
    { channel: 'first', target: `${app.url}/first` },
    { channel: 'second', target: `${app.url}/second` },
  ]);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  for (const d of dirs) await removeDir(d);
});

async function send(channel: string): Promise<string> {
  const { id } = await relay.api('GET', `/api/channels/${channel}`);
  const res = await request(`${relay.url}/h/${id}`, { method: 'POST', body: channel });
  assert.equal(res.statusCode, 202);
  return ((await res.body.json()) as { id: string }).id;
}

test('granting a channel later: the agent reconnects and receives its events', async () => {
  const waiting = await send('second');
  assert.equal((await relay.api('GET', `/api/events/${waiting}`)).status, 'queued');
  const from = agent.proc.lines.length;
  const updated = await relay.api('PATCH', `/api/agents/${agentId}`, {
    channels: ['first', 'second'],
  });
  assert.equal((updated.channels as string[]).length, 2);
  await agent.proc.waitFor((l) => l.msg === 'connected to the relay', 20_000, from);
  await waitForEventStatus(relay, waiting, 'delivered');
  assert.ok(app.received.some((r) => r.url === '/second'));
  await assert.rejects(relay.api('PATCH', `/api/agents/${agentId}`, { channels: ['nope'] }), /400/);
  await assert.rejects(relay.api('PATCH', `/api/agents/${agentId}`, { name: 'x' }), /400/);
});

test('renaming a granted channel: the agent reconnects and its welcome carries the new name', async () => {
  const from = agent.proc.lines.length;
  await relay.api('PATCH', '/api/channels/second', { name: 'second-renamed' });
  const welcome = await agent.proc.waitFor((l) => l.msg === 'connected to the relay', 20_000, from);
  assert.deepEqual([...(welcome['channels'] as string[])].sort(), ['first', 'second-renamed']);
  await relay.api('PATCH', '/api/channels/second-renamed', { name: 'second' });
  await agent.proc.waitFor(
    (l) => l.msg === 'connected to the relay' && (l['channels'] as string[]).includes('second'),
    20_000,
    from + 1,
  );
  // A change that keeps the name keeps the session.
  const kept = agent.proc.lines.length;
  await relay.api('PATCH', '/api/channels/first', { retry: { delaysMs: [1000] } });
  const id = await send('first');
  await waitForEventStatus(relay, id, 'delivered');
  assert.equal(
    agent.proc.lines.slice(kept).filter((l) => l.msg === 'connected to the relay').length,
    0,
  );
});

test('a new pairing code: pairing again replaces the key; the old one is refused', async () => {
  const old = await loadIdentity(agent.stateDir);
  const issued = await relay.api('POST', `/api/agents/${agentId}/pairing-code`);
  assert.match(issued.pairingCode, /^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  assert.equal(issued.relayUrl, relay.url.replace('127.0.0.1', 'localhost'));
  const fresh = await tempDir('postern-agent-');
  dirs.push(fresh);
  const pair = new Proc(
    [
      `${ROOT}/agent/main.ts`,
      'pair',
      '--relay',
      relay.url,
      '--code',
      issued.pairingCode,
      '--state-dir',
      fresh,
    ],
    {},
  );
  assert.equal(await pair.exited, 0, pair.raw.join('\n'));
  await agent.proc.waitForMsg('disconnected from the relay; reconnecting');
  assert.equal((await dial(relay.url, await mint(old))).status, 401, 'the old key is refused');
  const renewed = await loadIdentity(fresh);
  assert.equal(renewed.agentId, agentId, 'same agent, new key');
  const opened = await dial(relay.url, await mint(renewed));
  assert.ok(opened.ws, 'the new key opens the tunnel');
  opened.ws.terminate();
});
