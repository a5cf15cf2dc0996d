import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  configFromFlags,
  DEFAULT_TIMEOUT_MS,
  loadAgentConfig,
  MAX_TIMEOUT_MS,
  parseAgentConfig,
  parseRouteFlag,
} from '../../agent/config.ts';
import { ConfigError } from '../../shared/errors.ts';

const FILE = '/etc/postern/agent.yaml';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

const VALID_YAML = `# routes for the build box
routes:
  - channel: ch_3kTMd9xq
    target: http://127.0.0.1:3000/hooks/github
  - channel: stripe
    target: https://billing.internal:8443/
    timeoutMs: 2500
    signingSecret: ${SECRET}
`;

test('a valid YAML config: routes, URLs and defaults', () => {
  const config = parseAgentConfig(VALID_YAML, FILE);
  assert.equal(config.file, FILE);
  assert.equal(config.routes.length, 2);
  const [a, b] = config.routes;
  assert.equal(a?.channel, 'ch_3kTMd9xq');
  assert.ok(a?.target instanceof URL);
  assert.equal(a?.target.href, 'http://127.0.0.1:3000/hooks/github');
  assert.equal(a?.timeoutMs, DEFAULT_TIMEOUT_MS);
  assert.equal(DEFAULT_TIMEOUT_MS, 10_000);
  assert.equal(a?.signingSecret, null);
  assert.equal(b?.channel, 'stripe');
  assert.equal(b?.target.href, 'https://billing.internal:8443/');
  assert.equal(b?.timeoutMs, 2_500);
  assert.equal(b?.signingSecret, SECRET);
});

test('the parsed config is frozen', () => {
  const config = parseAgentConfig(VALID_YAML, FILE);
  assert.equal(Object.isFrozen(config), true);
  assert.equal(Object.isFrozen(config.routes), true);
  assert.equal(Object.isFrozen(config.routes[0]), true);
});

test('JSON is valid YAML and gives the same config', () => {
  const json = JSON.stringify({
    routes: [
      { channel: 'ch_3kTMd9xq', target: 'http://127.0.0.1:3000/hooks/github' },
      {
        channel: 'stripe',
        target: 'https://billing.internal:8443/',
        timeoutMs: 2500,
        signingSecret: SECRET,
      },
    ],
  });
  const fromJson = parseAgentConfig(json, FILE);
  const fromYaml = parseAgentConfig(VALID_YAML, FILE);
  const flat = (c: typeof fromJson) => c.routes.map((r) => ({ ...r, target: r.target.href }));
  assert.deepEqual(flat(fromJson), flat(fromYaml));
});

test('timeoutMs bounds are inclusive', () => {
  const config = parseAgentConfig(
    `routes:
  - {channel: a, target: "http://h/a", timeoutMs: 100}
  - {channel: b, target: "http://h/b", timeoutMs: ${MAX_TIMEOUT_MS}}
`,
    FILE,
  );
  assert.deepEqual(
    config.routes.map((r) => r.timeoutMs),
    [100, 300_000],
  );
});

/** Asserts that parsing fails with a ConfigError whose message matches every pattern. */
function assertConfigError(text: string, ...patterns: (string | RegExp)[]): void {
  assert.throws(
    () => parseAgentConfig(text, FILE),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.equal(err.code, 'ERR_CONFIG');
      assert.ok(err.message.startsWith(FILE), `"${err.message}" does not start with the file`);
      for (const p of patterns) {
        if (typeof p === 'string') {
          assert.ok(err.message.includes(p), `"${err.message}" does not mention "${p}"`);
        } else {
          assert.match(err.message, p);
        }
      }
      return true;
    },
  );
}

test('invalid YAML names the file and the line', () => {
  assertConfigError(
    'routes:\n  - channel: a\n    target: [unclosed\n',
    /\(line \d+, column \d+\)/,
    'not valid YAML',
  );
  assertConfigError('routes:\n  - channel: a\n  target: x\n', '(line 3, column', 'not valid YAML');
});

test('a duplicate key is invalid YAML', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/"}\nroutes: []\n',
    '(line 3, column 1)',
    'not valid YAML',
  );
});

test('a document that is not a mapping', () => {
  for (const text of ['- a\n- b\n', 'just text', '42', '']) {
    assertConfigError(text, `${FILE}: (top level): expected a mapping with a "routes" list`);
  }
});

test('an unknown top-level key', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/"}\nroute: []\n',
    `${FILE}: route: expected no such field`,
    '"routes"',
  );
});

test('routes missing, empty or not a list', () => {
  for (const text of ['routes: []\n', 'routes:\n', 'routes: {channel: a}\n', 'routes: a\n']) {
    assertConfigError(text, `${FILE}: routes: expected a non-empty list of routes`);
  }
});

test('a route that is not a mapping', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/"}\n  - just-a-string\n',
    `${FILE}: routes[1].(route): expected a mapping`,
  );
});

test('an unknown route field', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", timeout: 5}\n',
    `${FILE}: routes[0].timeout: expected no such field`,
    'timeoutMs',
  );
});

test('sync: false by default, true only when the route says so', () => {
  const config = parseAgentConfig(
    [
      'routes:',
      '  - {channel: a, target: "http://h/a"}',
      '  - {channel: b, target: "http://h/b", sync: true}',
      '  - {channel: c, target: "http://h/c", sync: false}',
    ].join('\n'),
    FILE,
  );
  assert.deepEqual(
    config.routes.map((r) => r.sync),
    [false, true, false],
  );
});

test('sync that is not true or false names the file, the field and the expectation', () => {
  for (const value of ['yes', '"true"', '1', 'null', '[true]']) {
    assertConfigError(
      `routes:\n  - {channel: a, target: "http://h/", sync: ${value}}\n`,
      `${FILE}: routes[0].sync: expected true or false`,
    );
  }
});

test('recordAnswer: true by default, false only when the route says so; anything else is refused', () => {
  const config = parseAgentConfig(
    [
      'routes:',
      '  - {channel: a, target: "http://h/a"}',
      '  - {channel: b, target: "http://h/b", recordAnswer: false}',
      '  - {channel: c, target: "http://h/c", recordAnswer: true}',
    ].join('\n'),
    FILE,
  );
  assert.deepEqual(
    config.routes.map((r) => r.recordAnswer),
    [true, false, true],
  );
  for (const value of ['no', '"false"', '0', 'null']) {
    assertConfigError(
      `routes:\n  - {channel: a, target: "http://h/", recordAnswer: ${value}}\n`,
      `${FILE}: routes[0].recordAnswer: expected true or false`,
    );
  }
});

test('a route without channel, or with a bad one', () => {
  assertConfigError(
    'routes:\n  - {target: "http://h/"}\n',
    `${FILE}: routes[0].channel: expected a string of 1–64 characters`,
  );
  assertConfigError(
    'routes:\n  - {channel: "", target: "http://h/"}\n',
    `${FILE}: routes[0].channel: expected a string`,
  );
  assertConfigError(
    'routes:\n  - {channel: 42, target: "http://h/"}\n',
    `${FILE}: routes[0].channel: expected a string`,
  );
});

test('a route without target', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/"}\n  - {channel: b}\n',
    `${FILE}: routes[1].target: expected a string of 1–2048 characters`,
  );
});

test('a target that is not a URL', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "not a url"}\n',
    `${FILE}: routes[0].target: expected an absolute http(s) URL, got "not a url"`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "/hooks/github"}\n',
    'routes[0].target: expected an absolute http(s) URL',
  );
});

test('a target with another scheme', () => {
  for (const target of ['ftp://h/x', 'file:///etc/passwd', 'ws://h/x', 'javascript:alert(1)']) {
    assertConfigError(
      `routes:\n  - {channel: a, target: "${target}"}\n`,
      `${FILE}: routes[0].target: expected an http:// or https:// URL, got "${target}"`,
    );
  }
});

test('a target with a query, a fragment or credentials', () => {
  for (const target of [
    'http://h/hooks?token=1',
    'http://h/hooks#frag',
    'http://user:pw@h/hooks',
    'http://user@h/hooks',
  ]) {
    assertConfigError(
      `routes:\n  - {channel: a, target: "${target}"}\n`,
      `${FILE}: routes[0].target: expected a URL without query, fragment or credentials`,
    );
  }
});

test('timeoutMs out of range or not an integer', () => {
  for (const value of ['99', '300001', '0', '-5', '1500.5', '"1000"', 'null']) {
    assertConfigError(
      `routes:\n  - {channel: a, target: "http://h/", timeoutMs: ${value}}\n`,
      `${FILE}: routes[0].timeoutMs: expected an integer from 100 to 300000`,
    );
  }
});

test('a bad signingSecret', () => {
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", signingSecret: "whsec_short"}\n',
    `${FILE}: routes[0].signingSecret: expected a string of 16–256 characters`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", signingSecret: "sk_live_0123456789abcdef"}\n',
    `${FILE}: routes[0].signingSecret: expected a Standard Webhooks secret`,
    '"whsec_"',
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", signingSecret: "whsec_not base64 at all!"}\n',
    `${FILE}: routes[0].signingSecret: expected a Standard Webhooks secret`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", signingSecret: 1234567890123456789}\n',
    `${FILE}: routes[0].signingSecret: expected a string`,
  );
});

test('a channel routed twice fans out: default names, explicit names, duplicates refused', () => {
  const config = parseAgentConfig(
    `routes:
  - {channel: github, target: "http://h/a"}
  - {channel: stripe, target: "http://h/b"}
  - {channel: github, target: "http://h/c", match: {headers: {X-GitHub-Event: [push, ping]}}}
  - name: deploys
    channel: github
    target: "http://h/d"
    concurrency: 2
    match: {json: {repository.full_name: acme/api, forced: false}}
`,
    FILE,
  );
  assert.deepEqual(
    config.routes.map((r) => [r.name, r.channel, r.concurrency]),
    [
      ['github#0', 'github', null],
      ['stripe#0', 'stripe', null],
      ['github#1', 'github', null],
      ['deploys', 'github', 2],
    ],
  );
  assert.deepEqual([...config.routes[2]!.match!.headers], [['x-github-event', ['push', 'ping']]]);
  assert.deepEqual(
    [...config.routes[3]!.match!.json],
    [
      ['repository.full_name', ['acme/api']],
      ['forced', [false]],
    ],
  );
  assertConfigError(
    `routes:
  - {name: a, channel: github, target: "http://h/a"}
  - {name: a, channel: stripe, target: "http://h/b"}
`,
    `${FILE}: routes[1].name: expected a name no other route has (routes[0] is "a")`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", match: {}}\n',
    `${FILE}: routes[0].match: expected at least one header or JSON field to match`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", match: {body: x}}\n',
    `${FILE}: routes[0].match.body: expected no such field (headers, json)`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", match: {json: {type: {nested: 1}}}}\n',
    `${FILE}: routes[0].match.json.type: expected a value or a list of values`,
  );
  assertConfigError(
    'routes:\n  - {channel: a, target: "http://h/", concurrency: 0}\n',
    `${FILE}: routes[0].concurrency: expected an integer from 1 to 10000`,
  );
});

test('errors never print the signing secret', () => {
  const secret = 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA';
  try {
    parseAgentConfig(
      `routes:\n  - {channel: a, target: "ftp://h/", signingSecret: "${secret}"}\n`,
      FILE,
    );
    assert.fail('did not throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message.includes(secret), false);
  }
});

test('loadAgentConfig reads a file; a missing file is named in the error', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'postern-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'agent.yaml');
  await writeFile(file, VALID_YAML);
  const config = await loadAgentConfig(file);
  assert.equal(config.file, file);
  assert.deepEqual(
    config.routes.map((r) => r.channel),
    ['ch_3kTMd9xq', 'stripe'],
  );

  const missing = path.join(dir, 'nope.yaml');
  await assert.rejects(loadAgentConfig(missing), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, `${missing}: cannot read the config file (ENOENT)`);
    return true;
  });

  // A bad file names itself too.
  const bad = path.join(dir, 'bad.yaml');
  await writeFile(bad, 'routes: []\n');
  await assert.rejects(loadAgentConfig(bad), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.ok(err.message.startsWith(`${bad}: routes: `), err.message);
    return true;
  });
});

test('--route CHANNEL=URL: split at the first =, validated like a file route', () => {
  const flag = parseRouteFlag('github=http://127.0.0.1:3000/a=b');
  assert.deepEqual(
    { channel: flag.channel, target: flag.target },
    { channel: 'github', target: 'http://127.0.0.1:3000/a=b' },
  );
  const config = configFromFlags([flag, parseRouteFlag('github=http://127.0.0.1:4000/')]);
  assert.equal(config.file, null);
  assert.equal(config.source, '--route flags');
  assert.deepEqual(
    config.routes.map((r) => [r.name, r.channel, r.target.href, r.timeoutMs, r.sync]),
    [
      ['github#0', 'github', 'http://127.0.0.1:3000/a=b', DEFAULT_TIMEOUT_MS, false],
      ['github#1', 'github', 'http://127.0.0.1:4000/', DEFAULT_TIMEOUT_MS, false],
    ],
  );
  for (const [text, message] of [
    [
      'github',
      '--route "github": expected CHANNEL=URL, e.g. --route github=http://127.0.0.1:3000/hooks',
    ],
    [
      '=http://h/',
      '--route "=http://h/": expected CHANNEL=URL, e.g. --route github=http://127.0.0.1:3000/hooks',
    ],
    [
      'github=',
      '--route "github=": expected CHANNEL=URL, e.g. --route github=http://127.0.0.1:3000/hooks',
    ],
  ] as const) {
    assert.throws(() => parseRouteFlag(text), { name: 'ConfigError', message });
  }
  assert.throws(() => configFromFlags([parseRouteFlag('gh=ftp://h/')]), {
    message: '--route "gh=ftp://h/": target: expected an http:// or https:// URL, got "ftp://h/"',
  });
  assert.throws(() => configFromFlags([parseRouteFlag(`${'c'.repeat(65)}=http://h/`)]), {
    message: `--route "${'c'.repeat(65)}=http://h/": channel: expected a string of 1–64 characters`,
  });
  assert.throws(() => configFromFlags([]), {
    message: 'run needs --config FILE or --route CHANNEL=URL',
  });
});

test('--route flags add to a config file: default names continue, the source names both', () => {
  const config = parseAgentConfig(VALID_YAML, FILE, [
    parseRouteFlag('stripe=http://127.0.0.1:5000/'),
  ]);
  assert.equal(config.file, FILE);
  assert.equal(config.source, `${FILE} and --route flags`);
  assert.deepEqual(
    config.routes.map((r) => r.name),
    ['ch_3kTMd9xq#0', 'stripe#0', 'stripe#1'],
  );
  const named = `routes:\n  - {name: "stripe#0", channel: other, target: "http://h/"}\n`;
  assert.throws(() => parseAgentConfig(named, FILE, [parseRouteFlag('stripe=http://h/')]), {
    message:
      '--route "stripe=http://h/": name: expected a name no other route has (routes[0] is "stripe#0")',
  });
});
