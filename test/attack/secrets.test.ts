/**
 * Secrets are compared in constant time and never handed back:
 * (a) a static scan of the modules that check secrets (server/verify/, server/admin-token.ts,
 *     server/pairing.ts): no `===`, `!==`, `==`, `!=` or `.equals(` touches a value named like a
 *     signature, digest, hash, secret, token, code or MAC; each of them compares through
 *     constantTimeEqual, which is built on crypto.timingSafeEqual;
 * (b) the admin token check accepts exactly the token, and refuses near misses;
 * (c) no answer of the relay (channels, agents, pairing, events, ingress, errors, metrics)
 *     contains the admin token, its hash, a verification secret or an expected signature.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before } from 'node:test';
import ts from 'typescript';
import { ROOT, removeDir, startRelay, type RelayHandle } from '../helpers/processes.ts';
import { errorCode, need, type ChannelView, type EventDetail } from './support.ts';
import { test } from '../helpers/store.ts';

// ---- (a) the static scan ---------------------------------------------------------------------

/**
 * Secret-like names (signature, digest, hash, secret, token, code, mac), matched as whole words
 * of an identifier (`codeHash`, `adminTokenHash`, `expected_signature`, `hmac`), so that
 * `decoded`, `statusCode` or `machine` are not taken for secrets; plus the names signature
 * checks give their two sides (`expected`, `given`, `received`, `provided`).
 */
const SECRET_WORD =
  /^(signatures?|sigs?|digests?|hash(es|ed)?|secrets?|tokens?|codes?|h?macs?|expected|given|received|provided)$/i;

function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(/[\s_\-$]+/)
    .filter((w) => w !== '');
}

function secretLike(name: string): boolean {
  const w = words(name).map((x) => x.toLowerCase());
  return w.some((x, i) => {
    if (!SECRET_WORD.test(x)) return false;
    // "code" alone or leading is a secret (a pairing code, `codeHash`); trailing another word
    // it is a status (`statusCode`, `exitCode`), unless that word is "pairing".
    if (/^codes?$/.test(x)) return i === 0 || w[i - 1] === 'pairing';
    return true;
  });
}

const EQUALITY = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
]);

interface Finding {
  file: string;
  line: number;
  text: string;
}

/** Every name an expression mentions: identifiers, property names, `x['key']` keys. */
function names(node: ts.Node): string[] {
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n) || ts.isPrivateIdentifier(n)) out.push(n.text);
    else if (ts.isElementAccessExpression(n) && ts.isStringLiteralLike(n.argumentExpression)) {
      out.push(n.argumentExpression.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return out;
}

function unwrap(node: ts.Expression): ts.Expression {
  let n = node;
  while (ts.isParenthesizedExpression(n) || ts.isAsExpression(n) || ts.isNonNullExpression(n)) {
    n = n.expression;
  }
  return n;
}

/** `undefined`, `null`, `void 0`: a presence check, which says nothing about the value. */
function isAbsence(node: ts.Expression): boolean {
  const n = unwrap(node);
  return (
    (ts.isIdentifier(n) && n.text === 'undefined') ||
    n.kind === ts.SyntaxKind.NullKeyword ||
    ts.isVoidExpression(n)
  );
}

/** `typeof x` or `x.length`: a check of type or size, not of the secret's content. */
function isShapeOnly(node: ts.Expression): boolean {
  const n = unwrap(node);
  return (
    ts.isTypeOfExpression(n) ||
    (ts.isPropertyAccessExpression(n) && ['length', 'byteLength'].includes(n.name.text))
  );
}

/**
 * Non-constant-time comparisons of secret-like values in one source text: an equality
 * operator or a `.equals(…)` call whose operands mention a secret-like name, unless it only
 * tests presence (`=== undefined`/`null`) or shape (`typeof`, `.length`).
 */
function scanSource(file: string, text: string): Finding[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const report = (node: ts.Node): void => {
    const { line } = source.getLineAndCharacterOfPosition(node.getStart(source));
    findings.push({ file, line: line + 1, text: node.getText(source).replace(/\s+/g, ' ') });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isBinaryExpression(node) && EQUALITY.has(node.operatorToken.kind)) {
      const sides = [node.left, node.right];
      const touchesSecret = sides.some((s) => names(s).some(secretLike));
      const exempt = sides.some(isAbsence) || sides.some(isShapeOnly);
      if (touchesSecret && !exempt) report(node);
    } else if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      ['equals', 'compare'].includes(node.expression.name.text) &&
      // Inside an equality (`Buffer.compare(a, b) === 0`), the equality is reported instead.
      !(ts.isBinaryExpression(node.parent) && EQUALITY.has(node.parent.operatorToken.kind))
    ) {
      // Buffer#equals, Buffer.compare: both stop at the first differing byte.
      const operands = [node.expression.expression, ...node.arguments];
      if (operands.some((o) => names(o).some(secretLike))) report(node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

function parse(file: string, text: string): ts.SourceFile {
  return ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
}

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await tsFiles(rel)));
    else if (entry.name.endsWith('.ts')) out.push(rel);
  }
  return out.sort();
}

/** The modules that check a secret a remote party presents. */
async function secretCheckingModules(): Promise<string[]> {
  return [...(await tsFiles('server/verify')), 'server/admin-token.ts', 'server/pairing.ts'];
}

test('static: the scan flags a non-constant-time comparison of a secret (self-test)', () => {
  const synthetic = [
    'export function check(signature: string, expected: string, a: Buffer, b: Buffer) {',
    '  if (signature === expected) return true;', // 2: flagged
    '  if (computeDigest(a) !== b.toString()) return false;', // 3: flagged
    '  if (a.equals(providedMac)) return true;', // 4: flagged
    "  const ok = token == 'fixed';", // 5: flagged (loose, against a literal)
    '  if (storedHash !== sha256Hex(String(b))) return false;', // 6: flagged
    '  if (', // 7-10: flagged, though spread over lines
    '    headerSignature ===',
    '    expected',
    '  ) return true;',
    "  if (config['secret'] === given) return true;", // 11: flagged, element access
    '  if (secret === undefined) return false;', // presence: fine
    "  if (typeof token !== 'string') return false;", // type: fine
    '  if (signature.length !== 64) return false;', // size: fine
    "  if (provider === 'github') return true;", // no secret-like name: fine
    '  // if (signature === expected) in a comment: fine',
    "  const s = 'signature === expected in a string: fine';",
    '  if (Buffer.compare(expectedHmac, a) === 0) return true;', // 18: flagged
    '  if (codeHash !== given) return false;', // 19: flagged
    "  if (decoded.toString('base64') !== text) return false;", // not a secret's name: fine
    '  if (res.statusCode !== 200) return false;', // nor is statusCode
    '  return constantTimeEqual(a, b);', // the right way
    '}',
  ].join('\n');
  const found = scanSource('synthetic.ts', synthetic);
  assert.deepEqual(
    found.map((f) => f.line),
    [2, 3, 4, 5, 6, 8, 11, 18, 19],
    found.map((f) => `${f.line}: ${f.text}`).join('\n'),
  );
  assert.equal(found[0]?.text, 'signature === expected');
  assert.equal(found[5]?.text, 'headerSignature === expected');
});

/** The source with every `constantTimeEqual(a, b)` call rewritten as `(a).equals(b)`. */
function withPlainEquals(file: string, text: string): { text: string; calls: number } {
  const source = parse(file, text);
  const edits: { start: number; end: number; replacement: string }[] = [];
  const visit = (n: ts.Node): void => {
    if (
      ts.isCallExpression(n) &&
      ts.isIdentifier(n.expression) &&
      n.expression.text === 'constantTimeEqual' &&
      n.arguments[0] !== undefined &&
      n.arguments[1] !== undefined
    ) {
      const a = n.arguments[0];
      const b = n.arguments[1];
      edits.push({
        start: n.getStart(source),
        end: n.getEnd(),
        replacement: `(${a.getText(source)}).equals(${b.getText(source)})`,
      });
      return;
    }
    ts.forEachChild(n, visit);
  };
  visit(source);
  let out = text;
  for (const e of edits.sort((x, y) => y.start - x.start)) {
    out = out.slice(0, e.start) + e.replacement + out.slice(e.end);
  }
  return { text: out, calls: edits.length };
}

test('static: the scan flags every constant-time compare of the real modules once made plain (self-test)', async () => {
  let calls = 0;
  const missed: string[] = [];
  for (const file of await secretCheckingModules()) {
    const mutated = withPlainEquals(file, await readFile(path.join(ROOT, file), 'utf8'));
    calls += mutated.calls;
    const found = scanSource(file, mutated.text).filter((f) => f.text.includes('.equals('));
    if (found.length !== mutated.calls) {
      missed.push(`${file}: ${mutated.calls} compares made plain, ${found.length} flagged`);
    }
  }
  assert.ok(
    calls >= 3,
    `${calls} constant-time compares found (admin token, pairing, at least one verifier)`,
  );
  assert.deepEqual(missed, []);
});

test('static: server/verify/, admin-token.ts and pairing.ts compare no secret with ===, !== or .equals', async () => {
  const files = await secretCheckingModules();
  assert.ok(files.includes('server/verify/github.ts'), `scanned: ${files.join(', ')}`);
  const findings: Finding[] = [];
  for (const file of files) {
    findings.push(...scanSource(file, await readFile(path.join(ROOT, file), 'utf8')));
  }
  assert.deepEqual(
    findings.map((f) => `${f.file}:${f.line}: ${f.text}`),
    [],
    'use constantTimeEqual / constantTimeEqualString / timingSafeEqual instead',
  );
});

/** Names of the functions a piece of source calls (`f(…)` and `x.f(…)`). */
function calledFunctions(source: ts.Node): Set<string> {
  const out = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n)) {
      const e = n.expression;
      if (ts.isIdentifier(e)) out.add(e.text);
      else if (ts.isPropertyAccessExpression(e)) out.add(e.name.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(source);
  return out;
}

const CONSTANT_TIME = ['constantTimeEqual', 'constantTimeEqualString', 'timingSafeEqual'];

/** The functions declared at the top of a module, by name, with what each calls. */
function declaredFunctions(source: ts.SourceFile): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  source.forEachChild((n) => {
    if (ts.isFunctionDeclaration(n) && n.name && n.body) {
      out.set(n.name.text, calledFunctions(n.body));
    }
  });
  return out;
}

/** Whether a module declares a provider: a variable typed `Verifier<…>`. */
function declaresVerifier(source: ts.SourceFile): boolean {
  let found = false;
  const visit = (n: ts.Node): void => {
    if (
      ts.isVariableDeclaration(n) &&
      n.type &&
      ts.isTypeReferenceNode(n.type) &&
      n.type.typeName.getText(source) === 'Verifier'
    ) {
      found = true;
    }
    ts.forEachChild(n, visit);
  };
  visit(source);
  return found;
}

test('static: each secret check goes through constantTimeEqual, which uses timingSafeEqual', async () => {
  const verifyFiles = await tsFiles('server/verify');
  const sources = new Map<string, ts.SourceFile>();
  for (const file of [...verifyFiles, 'server/admin-token.ts', 'server/pairing.ts']) {
    sources.set(file, parse(file, await readFile(path.join(ROOT, file), 'utf8')));
  }
  // Helpers of server/verify/ that compare in constant time, directly or through another one
  // (such as a shared "any of these HMACs matches" function).
  const constantTime = new Set(CONSTANT_TIME);
  const helpers = new Map<string, Set<string>>();
  for (const file of verifyFiles) {
    for (const [name, calls] of declaredFunctions(sources.get(file)!)) helpers.set(name, calls);
  }
  for (let round = 0; round < 10; round++) {
    for (const [name, calls] of helpers) {
      if ([...calls].some((c) => constantTime.has(c))) constantTime.add(name);
    }
  }
  const providers = verifyFiles.filter((f) => declaresVerifier(sources.get(f)!));
  assert.ok(providers.includes('server/verify/github.ts'), `providers: ${providers.join(', ')}`);
  const without: string[] = [];
  for (const file of providers) {
    const calls = calledFunctions(sources.get(file)!);
    if (![...calls].some((c) => constantTime.has(c))) without.push(file);
  }
  for (const file of ['server/admin-token.ts', 'server/pairing.ts']) {
    const calls = calledFunctions(sources.get(file)!);
    if (!CONSTANT_TIME.some((c) => calls.has(c))) without.push(file);
  }
  assert.deepEqual(without, [], 'modules that check a secret without a constant-time compare');

  const signingText = await readFile(path.join(ROOT, 'shared/signing.ts'), 'utf8');
  const signing = declaredFunctions(parse('shared/signing.ts', signingText));
  assert.ok(
    need(signing.get('constantTimeEqual'), 'constantTimeEqual').has('timingSafeEqual'),
    'constantTimeEqual calls crypto.timingSafeEqual',
  );
  assert.ok(
    need(signing.get('constantTimeEqualString'), 'constantTimeEqualString').has(
      'constantTimeEqual',
    ),
    'constantTimeEqualString goes through constantTimeEqual',
  );
  assert.deepEqual(scanSource('shared/signing.ts', signingText), [], 'and compares nothing else');
});

// ---- (b) and (c): a real relay ------------------------------------------------------------------

const VERIFY_SECRET = 'gh-verify-secret-Qm7TzX2p';
const ROTATED_SECRET = 'gh-rotated-secret-Vb9LwR4k';
const PROVIDER_AUTH = 'Bearer provider-own-token-Zr83';

let relay: RelayHandle | undefined;

before(async () => {
  relay = await startRelay();
});

after(async () => {
  await relay?.stop();
  if (relay) await removeDir(relay.dataDir);
});

interface Answer {
  label: string;
  status: number;
  text: string;
}

async function call(
  label: string,
  method: string,
  urlPath: string,
  opts: { token?: string | null; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const r = need(relay, 'relay');
  const token = opts.token === undefined ? r.token : opts.token;
  const res = await fetch(`${r.url}${urlPath}`, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...opts.headers,
    },
    ...(opts.body === undefined ? {} : { body: opts.body }),
  });
  return { label, status: res.status, text: await res.text() };
}

/** Changes the character at `at` to another one of the same alphabet. */
function changeAt(token: string, at: number): string {
  const c = token[at]!;
  const other = c === 'A' ? 'B' : 'A';
  return `${token.slice(0, at)}${other}${token.slice(at + 1)}`;
}

test('the admin token check accepts exactly the token and refuses near misses with 401', async () => {
  const r = need(relay, 'relay');
  const t = r.token;
  assert.ok(t.length >= 40, 'a long random token');
  const channelsBefore = await call('list', 'GET', '/api/channels');
  assert.equal(channelsBefore.status, 200, 'the exact token is accepted');

  const nearMisses: [string, string][] = [
    ['first character changed', changeAt(t, 0)],
    ['a middle character changed', changeAt(t, Math.floor(t.length / 2))],
    ['last character changed', changeAt(t, t.length - 1)],
    ['the token without its last character', t.slice(0, -1)],
    ['its first half', t.slice(0, Math.floor(t.length / 2))],
    ['its first character', t.slice(0, 1)],
    ['the token plus one character', `${t}A`],
    ['the token twice', `${t}${t}`],
    ['the empty string', ''],
    ['the SHA-256 of the token', createHash('sha256').update(t).digest('hex')],
  ];
  const outcomes: string[] = [];
  for (const [what, variant] of nearMisses) {
    assert.notEqual(variant, t, what);
    const read = await call(what, 'GET', '/api/channels', { token: variant });
    const write = await call(what, 'POST', '/api/channels', {
      token: variant,
      body: JSON.stringify({ name: 'near-miss' }),
    });
    outcomes.push(
      `${what}: ${read.status} ${errorCode(read.text)} / ${write.status} ${errorCode(write.text)}`,
    );
  }
  assert.deepEqual(
    outcomes,
    nearMisses.map(([what]) => `${what}: 401 ERR_UNAUTHORIZED / 401 ERR_UNAUTHORIZED`),
  );
  const channelsAfter = await call('list', 'GET', '/api/channels');
  assert.equal(channelsAfter.text, channelsBefore.text, 'no refused request created a channel');
  // And once more the exact token, on the same endpoints.
  const created = await call('create', 'POST', '/api/channels', {
    body: JSON.stringify({ name: 'exact-token' }),
  });
  assert.equal(created.status, 201, created.text);
});

test('no answer contains the admin token, its hash, a verification secret or an expected signature', async () => {
  const r = need(relay, 'relay');
  const answers: Answer[] = [];
  const keep = (a: Answer, status: number): Answer => {
    answers.push(a);
    assert.equal(a.status, status, `${a.label}: ${a.text}`);
    return a;
  };

  // Channels: create with a secret, rotate it, read them back every way.
  const gh = JSON.parse(
    keep(
      await call('POST /api/channels (github)', 'POST', '/api/channels', {
        body: JSON.stringify({ name: 'gh', verify: { provider: 'github', secret: VERIFY_SECRET } }),
      }),
      201,
    ).text,
  ) as ChannelView;
  keep(
    await call('POST /api/channels (plain)', 'POST', '/api/channels', {
      body: JSON.stringify({ name: 'plain' }),
    }),
    201,
  );
  keep(
    await call('PATCH /api/channels/gh (rotation)', 'PATCH', '/api/channels/gh', {
      body: JSON.stringify({
        verify: { provider: 'github', secret: ROTATED_SECRET, previousSecret: VERIFY_SECRET },
      }),
    }),
    200,
  );
  keep(await call('GET /api/channels', 'GET', '/api/channels'), 200);
  keep(await call('GET /api/channels/gh', 'GET', '/api/channels/gh'), 200);
  keep(await call('GET /api/channels/:id', 'GET', `/api/channels/${gh.id}`), 200);
  // Refusals that carry a secret in what they refuse.
  keep(
    await call('POST /api/channels (duplicate)', 'POST', '/api/channels', {
      body: JSON.stringify({ name: 'gh', verify: { provider: 'github', secret: VERIFY_SECRET } }),
    }),
    409,
  );
  keep(
    await call('POST /api/channels (unknown provider)', 'POST', '/api/channels', {
      body: JSON.stringify({ name: 'x1', verify: { provider: 'nope', secret: VERIFY_SECRET } }),
    }),
    400,
  );
  keep(
    await call('POST /api/channels (secret too long)', 'POST', '/api/channels', {
      body: JSON.stringify({
        name: 'x2',
        verify: { provider: 'github', secret: `${VERIFY_SECRET}${'x'.repeat(1100)}` },
      }),
    }),
    400,
  );
  keep(
    await call('POST /api/channels (unknown field named secret)', 'POST', '/api/channels', {
      body: JSON.stringify({ name: 'x3', secret: VERIFY_SECRET }),
    }),
    400,
  );

  // Agents and pairing.
  const added = JSON.parse(
    keep(
      await call('POST /api/agents', 'POST', '/api/agents', {
        body: JSON.stringify({ name: 'pairing-agent', channels: ['gh'] }),
      }),
      201,
    ).text,
  ) as { id: string; pairingCode: string };
  const jwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
  keep(
    await call('POST /api/pair', 'POST', '/api/pair', {
      token: null,
      body: JSON.stringify({
        code: added.pairingCode,
        publicKey: { kty: 'OKP', crv: 'Ed25519', x: jwk.x },
      }),
    }),
    200,
  );
  keep(
    await call('POST /api/pair (code reused)', 'POST', '/api/pair', {
      token: null,
      body: JSON.stringify({
        code: added.pairingCode,
        publicKey: { kty: 'OKP', crv: 'Ed25519', x: jwk.x },
      }),
    }),
    401,
  );
  keep(await call('GET /api/agents', 'GET', '/api/agents'), 200);

  // Webhooks: signed with the new secret (carrying the provider's own Authorization header),
  // with the previous one, and forged.
  const body = Buffer.from('{"action":"opened","number":7}');
  const sign = (secret: string, b: Buffer) =>
    `sha256=${createHmac('sha256', secret).update(b).digest('hex')}`;
  const accepted = keep(
    await call('ingress (signed)', 'POST', `/h/${gh.id}/push`, {
      token: null,
      body,
      headers: { 'x-hub-signature-256': sign(ROTATED_SECRET, body), authorization: PROVIDER_AUTH },
    }),
    202,
  );
  keep(
    await call('ingress (previous secret)', 'POST', `/h/${gh.id}`, {
      token: null,
      body,
      headers: { 'x-hub-signature-256': sign(VERIFY_SECRET, body) },
    }),
    202,
  );
  const forgedBody = Buffer.from('{"action":"forged"}');
  keep(
    await call('ingress (forged)', 'POST', `/h/${gh.id}`, {
      token: null,
      body: forgedBody,
      headers: { 'x-hub-signature-256': sign('attacker-guess', forgedBody) },
    }),
    401,
  );
  keep(
    await call('ingress (no signature)', 'POST', `/h/${gh.id}`, { token: null, body: forgedBody }),
    401,
  );

  // Events.
  const eventId = (JSON.parse(accepted.text) as { id: string }).id;
  keep(await call('GET /api/events', 'GET', '/api/events'), 200);
  const one = keep(await call('GET /api/events/:id', 'GET', `/api/events/${eventId}`), 200);
  keep(await call('POST /api/events/:id/replay', 'POST', `/api/events/${eventId}/replay`), 202);
  keep(await call('GET /api/events/:id (unknown)', 'GET', '/api/events/evt_nope'), 404);

  // Everything else a client can reach, and refusals of a wrong token.
  keep(await call('GET /metrics', 'GET', '/metrics'), 200);
  keep(await call('GET /healthz', 'GET', '/healthz', { token: null }), 200);
  keep(await call('GET /readyz', 'GET', '/readyz', { token: null }), 200);
  keep(await call('GET /api/channels (wrong token)', 'GET', '/api/channels', { token: 'x' }), 401);
  keep(await call('GET /metrics (no token)', 'GET', '/metrics', { token: null }), 401);

  // What the relay stores by design: the provider's headers exactly as sent (byte-exact
  // passthrough), its own Authorization header included. That is the provider's credential
  // for the internal app, not one of the relay's secrets.
  const event = JSON.parse(one.text) as EventDetail;
  assert.deepEqual(
    event.headers.filter(([n]) => n.toLowerCase() === 'authorization'),
    [['authorization', PROVIDER_AUTH]],
  );
  assert.deepEqual(Buffer.from(event.body, 'base64'), body);

  const adminHash = createHash('sha256').update(r.token, 'utf8').digest('hex');
  const secrets: Record<string, string> = {
    'the admin token': r.token,
    'the admin token without its prefix': r.token.replace(/^pat_/, ''),
    "the admin token's SHA-256 (stored hash)": adminHash,
    'the verification secret': VERIFY_SECRET,
    'the rotated verification secret': ROTATED_SECRET,
    'the signature the forged request should have carried': sign(ROTATED_SECRET, forgedBody)
      .slice('sha256='.length)
      .slice(0, 32),
    'the signature for the forged body under the previous secret': sign(VERIFY_SECRET, forgedBody)
      .slice('sha256='.length)
      .slice(0, 32),
  };
  const leaks: string[] = [];
  for (const a of answers) {
    for (const [what, secret] of Object.entries(secrets)) {
      if (a.text.includes(secret)) leaks.push(`${a.label} contains ${what}`);
    }
    // The pairing code belongs in exactly one answer: the one that creates it.
    if (a.label !== 'POST /api/agents' && a.text.includes(added.pairingCode)) {
      leaks.push(`${a.label} contains the pairing code`);
    }
  }
  assert.equal(answers.length, 27, 'answers checked');
  assert.deepEqual(leaks, []);
  // The verification is visible, without its secrets.
  const view = JSON.parse(
    need(
      answers.find((a) => a.label === 'GET /api/channels/gh'),
      'view',
    ).text,
  ) as {
    verify: { provider?: unknown } | null;
  };
  assert.equal(view.verify?.provider, 'github');
});
