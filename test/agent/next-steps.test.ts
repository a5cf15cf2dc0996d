import assert from 'node:assert/strict';
import { test } from 'node:test';
import { programName, stateDirArgs } from '../../agent/next-steps.ts';
import { shellQuote } from '../../shared/cli.ts';

const CWD = '/home/me/postern';

test('the program name follows the way the agent was started', () => {
  const node = '/usr/bin/node';
  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [[node, `${CWD}/agent/main.ts`], { npm_lifecycle_event: 'agent' }, 'npm run agent --'],
    [[node, `${CWD}/node_modules/.bin/postern-agent`], {}, './node_modules/.bin/postern-agent'],
    [
      [node, `${CWD}/node_modules/.bin/postern-agent`],
      { npm_lifecycle_event: 'npx' },
      'npx postern-agent',
    ],
    [
      ['/usr/local/bin/postern-agent', '/usr/local/bin/postern-agent'],
      {},
      '/usr/local/bin/postern-agent',
    ],
    [
      ['/usr/local/bin/postern-agent', '/usr/local/bin/postern-agent'],
      { PATH: '/usr/bin:/usr/local/bin' },
      'postern-agent',
    ],
    [[node, `${CWD}/bin/postern-agent.mjs`], {}, './bin/postern-agent.mjs'],
    [[node, `${CWD}/dist/postern-agent.mjs`], {}, 'node dist/postern-agent.mjs'],
    [
      [node, '/opt/postern agent/postern-agent.mjs'],
      {},
      "node '/opt/postern agent/postern-agent.mjs'",
    ],
    [[node, `${CWD}/agent/main.ts`], {}, 'node --import tsx agent/main.ts'],
    [[node], {}, 'postern-agent'],
  ];
  for (const [argv, env, expected] of cases) {
    assert.equal(programName(argv, env, CWD), expected, argv.join(' '));
  }
});

test('state dirs are quoted for a POSIX shell and left out when they are the default', () => {
  assert.equal(shellQuote('./agent-state'), './agent-state');
  assert.equal(shellQuote('/tmp/a b'), "'/tmp/a b'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote('~/x'), "'~/x'");
  assert.equal(shellQuote('$HOME'), "'$HOME'");
  assert.equal(stateDirArgs('/home/me/.postern-agent', '/home/me/.postern-agent'), '');
  assert.equal(
    stateDirArgs('./agent-state', '/home/me/.postern-agent'),
    ' --state-dir ./agent-state',
  );
});
