/** The command-line helpers both binaries share: suggestions, URL checks, the program's name. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { invokedAs, nearest, parseFlags, readHttpUrl, shellQuote } from '../../shared/cli.ts';

test('nearest: a prefix first, then the smallest edit distance', () => {
  assert.equal(nearest('chanel', ['channel', 'status', 'limit']), 'channel');
  assert.equal(nearest('stauts', ['channel', 'status', 'limit']), 'status');
  assert.equal(nearest('ls', ['list', 'show']), 'list');
  assert.equal(nearest('x', []), undefined);
});

test('parseFlags: an unknown flag names the nearest; --help wins over everything', () => {
  const flags = { channel: { type: 'string' }, json: { type: 'boolean' } } as const;
  assert.throws(
    () => parseFlags(['--chanel', 'a'], flags, 'tail', 'x tail --help'),
    /^ConfigError: tail: unknown flag --chanel; did you mean --channel\? \(x tail --help\)$/,
  );
  assert.throws(
    () => parseFlags(['--channel'], flags, 'tail', 'h'),
    /tail: --channel needs a value/,
  );
  assert.throws(() => parseFlags(['--json=1'], flags, 'tail', 'h'), /tail: --json takes no value/);
  assert.equal(parseFlags(['--bogus', '--help'], flags, 'tail', 'h').help, true);
  assert.throws(
    () => parseFlags(['--status', 'x'], flags, 'tail', 'h', ['status']),
    /^ConfigError: tail: --status is not a flag of this command \(h\)$/,
  );
  const ok = parseFlags(['a', '--channel', 'c'], flags, 'tail', 'h');
  assert.deepEqual([ok.values['channel'], ok.positionals], ['c', ['a']]);
});

test('readHttpUrl: a host without a scheme is refused with the fix', () => {
  assert.throws(
    () => readHttpUrl('--relay', 'localhost:8080'),
    /--relay: expected an http\(s\) URL such as http:\/\/localhost:8080, got "localhost:8080" \(did you mean http:\/\/localhost:8080\?\)/,
  );
  assert.throws(() => readHttpUrl('--relay', 'ftp://x'), /expected an http\(s\) URL/);
  assert.equal(readHttpUrl('--relay', 'https://relay.example/'), 'https://relay.example/');
});

test('invokedAs: the name a user started the program by, and the other one the same way', () => {
  const cwd = '/home/u/postern';
  assert.equal(
    invokedAs('relay', { npm_lifecycle_event: 'relay' }, '/x', 'agent', cwd),
    'npm run agent --',
  );
  assert.equal(
    invokedAs('relay', { npm_lifecycle_event: 'npx' }, '/x', 'agent', cwd),
    'npx postern-agent',
  );
  assert.equal(invokedAs('relay', {}, `${cwd}/server/main.ts`, 'relay', cwd), 'npm run relay --');
  assert.equal(
    invokedAs(
      'relay',
      { PATH: '/usr/bin:/usr/local/bin' },
      '/usr/local/bin/postern-relay',
      'agent',
      cwd,
    ),
    'postern-agent',
  );
  assert.equal(
    invokedAs('relay', { PATH: '/usr/bin' }, `${cwd}/dist/postern-relay.mjs`, 'agent', cwd),
    'node ./dist/postern-agent.mjs',
  );
  assert.equal(
    invokedAs('relay', { PATH: '/usr/bin' }, `${cwd}/bin/postern-relay.mjs`, 'relay', cwd),
    './bin/postern-relay.mjs',
  );
  assert.equal(
    invokedAs('agent', { PATH: '/usr/bin' }, '/opt/postern/postern-agent', 'agent', cwd),
    '/opt/postern/postern-agent',
  );
});

test('shellQuote: plain words as they are, anything else in single quotes', () => {
  assert.equal(shellQuote('./agent-state'), './agent-state');
  assert.equal(shellQuote("my dir's"), `'my dir'\\''s'`);
});
