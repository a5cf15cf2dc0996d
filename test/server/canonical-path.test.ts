import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCanonicalTarget } from '../../server/http/canonical-path.ts';

test('canonical targets: the relay’s own paths as they are written, with any query', () => {
  const ok = [
    '/',
    '/healthz',
    '/api/agents',
    '/api/channels/ch_abc123',
    '/api/channels/github.prod-2',
    '/api/channels/a..b',
    '/api/events?limit=500&before=evt_x&status=queued',
    '/api/stream?channel=github',
    '/assets/main-3F2A.js',
    '/api/events?x=/../..;%2e//',
    '/API/agents', // a case no route has: the routers answer it (404), not this gate
  ];
  assert.deepEqual(
    ok.filter((t) => !isCanonicalTarget(t)),
    [],
  );
});

test('refused: every other spelling of a path', () => {
  const refused = [
    '',
    '*',
    'http://127.0.0.1/api/agents',
    'api/agents',
    '//api/agents',
    '/api//agents',
    '/api/agents/',
    '//',
    '/.',
    '/..',
    '/./api/agents',
    '/api/./agents',
    '/api/../api/agents',
    '/api/agents/.',
    '/api/agents/..',
    '/api./agents',
    '/api/agents.',
    '/.api/agents',
    '/%61pi/agents',
    '/%2e/api/agents',
    '/api%2Fagents',
    '/api/agents%20',
    '/api/%',
    '/api;x/agents',
    '/api/agents;x',
    '/api\\agents',
    '/api/agents#x',
    '/api/agents\t',
    '/api/ag ents',
    '/api/agent\u00e9s',
    '/h/../api/agents',
  ];
  assert.deepEqual(
    refused.filter((t) => isCanonicalTarget(t)),
    [],
  );
});
