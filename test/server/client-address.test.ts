import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { clientAddress } from '../../server/http/client-address.ts';

function req(peer: string, forwarded?: string | string[]): IncomingMessage {
  return {
    socket: { remoteAddress: peer },
    headers: forwarded === undefined ? {} : { 'x-forwarded-for': forwarded },
  } as unknown as IncomingMessage;
}

test('without --trust-proxy the TCP peer is the client, whatever the headers say', () => {
  assert.equal(clientAddress(req('10.0.0.5', '203.0.113.7'), false), '10.0.0.5');
});

test('with --trust-proxy the entry the proxy appended (the rightmost) is the client', () => {
  assert.equal(clientAddress(req('127.0.0.1', '198.51.100.1, 203.0.113.7'), true), '203.0.113.7');
  assert.equal(clientAddress(req('127.0.0.1', ['spoofed', '203.0.113.8']), true), '203.0.113.8');
  assert.equal(clientAddress(req('127.0.0.1'), true), '127.0.0.1', 'no header: the peer');
  assert.equal(clientAddress(req('127.0.0.1', ' '), true), '127.0.0.1', 'an empty entry: the peer');
});
