import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNewChannel } from '../../server/channels.ts';
import { allowedMethods, pathAllowed, refusalOf } from '../../server/http/channel-rules.ts';
import type { ChannelRecord } from '../../server/store/types.ts';

function channel(raw: Record<string, unknown>): ChannelRecord {
  return parseNewChannel({ name: 'c', ...raw }, 'ch_0123456789abcdefghjkmnpqrs', 0);
}

const GITHUB = { provider: 'github', secret: 's' };

test('methods: the provider’s by default, any without verify, the channel’s when set', () => {
  assert.equal(allowedMethods(channel({})), null, 'unverified: any method');
  assert.deepEqual(allowedMethods(channel({ verify: GITHUB })), ['POST']);
  assert.deepEqual(
    allowedMethods(channel({ verify: { provider: 'meta', secret: 's', verifyToken: 't' } })),
    ['POST', 'GET'],
  );
  assert.deepEqual(allowedMethods(channel({ verify: GITHUB, methods: ['POST', 'PUT'] })), [
    'POST',
    'PUT',
  ]);
  assert.deepEqual(allowedMethods(channel({ methods: ['GET'] })), ['GET']);
});

test('refusalOf: 405 with Allow for a method, 404 for a path, null otherwise', () => {
  const gh = channel({ verify: GITHUB, paths: ['/push'] });
  const put = refusalOf(gh, 'PUT', '/push');
  assert.equal(put?.error.status, 405);
  assert.equal(put?.error.code, 'ERR_METHOD_NOT_ALLOWED');
  assert.equal(put?.error.expose, true);
  assert.deepEqual(put?.headers, { allow: 'POST' });
  assert.equal(put?.outcome, 'method_not_allowed');
  const path = refusalOf(gh, 'POST', '/admin/reindex');
  assert.equal(path?.error.status, 404);
  assert.equal(path?.error.code, 'ERR_NOT_FOUND');
  assert.equal(path?.error.message, 'path not allowed on this channel');
  assert.equal(path?.outcome, 'path_not_allowed');
  assert.equal(refusalOf(gh, 'POST', '/push'), null);
  assert.equal(refusalOf(channel({}), 'DELETE', '/anything'), null, 'no rules: anything goes');
  const both = channel({ methods: ['GET', 'POST'] });
  assert.deepEqual(refusalOf(both, 'PUT', '')?.headers, { allow: 'GET, POST' });
});

test('paths: exact, prefix and empty suffixes', () => {
  const c = channel({ paths: ['', '/push', '/github/*'] });
  for (const ok of ['', '/push', '/github/', '/github/push', '/github/a/b/c', '/github/%2F']) {
    assert.equal(pathAllowed(c, ok), true, `"${ok}" allowed`);
  }
  for (const refused of ['/', '/push/', '/pushx', '/Push', '/github', '/githubx/a', '/admin']) {
    assert.equal(pathAllowed(c, refused), false, `"${refused}" refused`);
  }
  assert.equal(pathAllowed(channel({ paths: ['/push'] }), ''), false, 'no "" entry: no bare URL');
  assert.equal(pathAllowed(channel({}), '/../anything'), true, 'no paths: any');
});

test('paths: a suffix a URL parser would rewrite matches nothing', () => {
  const c = channel({ paths: ['/github/*'] });
  for (const sneaky of [
    '/github/../admin',
    '/github/./push',
    '/github/%2e%2e/admin',
    '/github/%2E%2E/admin',
    '/github/.%2e/admin',
    '/github/..',
    '/github\\..\\admin',
    '/github/a b',
    '/github/\t/x',
    '//evil.example/github/x',
  ]) {
    assert.equal(pathAllowed(c, sneaky), false, JSON.stringify(sneaky));
  }
});
