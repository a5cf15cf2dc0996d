/**
 * No secret in any log line: an end-to-end scenario at debug level (pairing, a verified
 * channel, deliveries, refusals, revocation), then every line either process wrote is searched
 * for the admin token, JWTs, the pairing code and the verification and signing secrets.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after } from 'node:test';
import { request } from 'undici';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  Proc,
  ROOT,
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

const VERIFY_SECRET = 'gh-verify-secret-4f7a9c';
const SIGNING_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let app: TestApp | undefined;
let pairProc: Proc | undefined;

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  if (relay) await removeDir(relay.dataDir);
  if (agent) await removeDir(agent.stateDir);
});

test('relay and agent logs contain no token, JWT, pairing code or secret', async () => {
  app = await startApp();
  relay = await startRelay();
  const channel = await relay.api('POST', '/api/channels', {
    name: 'secrets',
    verify: { provider: 'github', secret: VERIFY_SECRET },
  });
  const added = await relay.api('POST', '/api/agents', {
    name: 'secret-agent',
    channels: ['secrets'],
  });
  const code: string = added.pairingCode;
  const stateDir = await tempDir('postern-agent-');
  // A wrong code first (logged as a refusal), then the right one.
  const wrong = await fetch(`${relay.url}/api/pair`, {
    method: 'POST',
    body: JSON.stringify({
      code: 'AAAA-BBBB-CCCC',
      publicKey: { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) },
    }),
  });
  assert.equal(wrong.status, 401);
  pairProc = new Proc(
    [
      `${ROOT}/agent/main.ts`,
      'pair',
      '--relay',
      relay.url,
      '--code',
      code,
      '--state-dir',
      stateDir,
    ],
    {},
  );
  assert.equal(await pairProc.exited, 0);
  agent = await startAgent(stateDir, [
    { channel: 'secrets', target: app.url, signingSecret: SIGNING_SECRET },
  ]);

  const body = Buffer.from('{"action":"opened"}');
  const signature = `sha256=${createHmac('sha256', VERIFY_SECRET).update(body).digest('hex')}`;
  const ok = await request(`${relay.url}/h/${channel.id}`, {
    method: 'POST',
    body,
    headers: { 'x-hub-signature-256': signature, authorization: 'Bearer provider-token-xyz' },
  });
  const { id } = (await ok.body.json()) as { id: string };
  await waitForEventStatus(relay, id, 'delivered');
  const forged = await request(`${relay.url}/h/${channel.id}`, {
    method: 'POST',
    body,
    headers: { 'x-hub-signature-256': 'sha256=00' },
  });
  await forged.body.dump();
  assert.equal(forged.statusCode, 401);

  // A refused and a replayed tunnel token.
  const identity = await loadIdentity(stateDir);
  const token = await mint(identity);
  const first = await dial(relay.url, token);
  first.ws?.terminate();
  const replayed = await dial(relay.url, token);
  assert.equal(replayed.status, 401);
  const badAud = await mint(identity, { aud: 'https://elsewhere.example' });
  assert.equal((await dial(relay.url, badAud)).status, 401);

  // A wrong admin token, then revocation.
  const denied = await fetch(`${relay.url}/api/channels`, {
    headers: { authorization: 'Bearer wrong-admin-token-000' },
  });
  assert.equal(denied.status, 401);
  await relay.api('DELETE', `/api/agents/${added.id}`);
  await agent.proc.waitForMsg('disconnected from the relay; reconnecting');

  const lines = [...relay.proc.raw, ...agent.proc.raw, ...pairProc.raw];
  assert.ok(lines.length > 20, `enough log lines to be meaningful (${lines.length})`);
  const secrets: Record<string, string> = {
    'admin token': relay.token,
    'pairing code': code,
    'pairing code (bare)': code.replace(/-/g, ''),
    'verification secret': VERIFY_SECRET,
    'signing secret': SIGNING_SECRET,
    'signing secret key': SIGNING_SECRET.slice('whsec_'.length),
    'JWT replayed': token,
    'JWT signature part': token.split('.')[2]!,
    'provider Authorization header': 'provider-token-xyz',
    'wrong admin token': 'wrong-admin-token-000',
  };
  for (const [what, secret] of Object.entries(secrets)) {
    const hits = lines.filter((l) => l.includes(secret));
    assert.deepEqual(hits, [], `${what} appears in the logs`);
  }
  const jwtLike = lines.filter((l) => /eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\./.test(l));
  assert.deepEqual(jwtLike, [], 'no JWT-shaped string in the logs');
});
