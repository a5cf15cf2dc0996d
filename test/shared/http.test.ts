import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerValue, pairsFromRaw, parseRetryAfter, withoutHopByHop } from '../../shared/http.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

test('withoutHopByHop removes every hop-by-hop header, in any case', () => {
  const headers: HeaderPair[] = [
    ['Connection', 'keep-alive'],
    ['Keep-Alive', 'timeout=5'],
    ['Proxy-Authenticate', 'Basic'],
    ['Proxy-Authorization', 'Basic abc'],
    ['Proxy-Connection', 'keep-alive'],
    ['TE', 'trailers'],
    ['Trailer', 'Expires'],
    ['Transfer-Encoding', 'chunked'],
    ['UPGRADE', 'websocket'],
    ['Content-Type', 'application/json'],
  ];
  assert.deepEqual(withoutHopByHop(headers), [['Content-Type', 'application/json']]);
});

test('withoutHopByHop keeps end-to-end headers in order, with duplicates and case', () => {
  const headers: HeaderPair[] = [
    ['X-GitHub-Event', 'push'],
    ['Set-Cookie', 'a=1'],
    ['transfer-encoding', 'chunked'],
    ['Set-Cookie', 'b=2'],
    ['x-empty', ''],
    ['Content-Length', '12'],
  ];
  assert.deepEqual(withoutHopByHop(headers), [
    ['X-GitHub-Event', 'push'],
    ['Set-Cookie', 'a=1'],
    ['Set-Cookie', 'b=2'],
    ['x-empty', ''],
    ['Content-Length', '12'],
  ]);
});

test('withoutHopByHop removes the headers that Connection names', () => {
  const headers: HeaderPair[] = [
    ['X-Secret-Hop', 'drop me'],
    ['Connection', 'close, X-Secret-Hop ,  x-other'],
    ['x-other', 'drop me too'],
    ['connection', 'X-Third'],
    ['x-third', '3'],
    ['x-secret-hop-not', 'keep (only a prefix matches)'],
    ['x-kept', 'keep'],
  ];
  assert.deepEqual(withoutHopByHop(headers), [
    ['x-secret-hop-not', 'keep (only a prefix matches)'],
    ['x-kept', 'keep'],
  ]);
});

test('withoutHopByHop does not change its input', () => {
  const headers: HeaderPair[] = [
    ['Connection', 'x-a'],
    ['x-a', '1'],
    ['x-b', '2'],
  ];
  const copy = structuredClone(headers);
  withoutHopByHop(headers);
  assert.deepEqual(headers, copy);
});

test('pairsFromRaw and headerValue', () => {
  const pairs = pairsFromRaw(['Host', 'a.example', 'X-A', '1', 'x-a', '2', 'dangling']);
  assert.deepEqual(pairs, [
    ['Host', 'a.example'],
    ['X-A', '1'],
    ['x-a', '2'],
  ]);
  assert.equal(headerValue(pairs, 'x-a'), '1');
  assert.equal(headerValue(pairs, 'HOST'), 'a.example');
  assert.equal(headerValue(pairs, 'x-missing'), undefined);
});

const NOW = Date.UTC(2015, 9, 21, 7, 28, 0); // Wed, 21 Oct 2015 07:28:00 GMT

test('parseRetryAfter reads delay-seconds as milliseconds', () => {
  assert.equal(parseRetryAfter('120', NOW), 120_000);
  assert.equal(parseRetryAfter('7', NOW), 7_000);
  assert.equal(parseRetryAfter(' 7 ', NOW), 7_000);
  assert.equal(parseRetryAfter('0', NOW), 0);
  assert.equal(parseRetryAfter('007', NOW), 7_000);
});

test('parseRetryAfter reads an HTTP-date as the time left from now', () => {
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', NOW), 30_000);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 08:28:00 GMT', NOW), 3_600_000);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', NOW), 0);
  // A date already past means "now", never a negative wait.
  assert.equal(parseRetryAfter('Tue, 20 Oct 2015 07:28:00 GMT', NOW), 0);
});

test('parseRetryAfter: absent or unreadable values are undefined', () => {
  assert.equal(parseRetryAfter(undefined, NOW), undefined);
  assert.equal(parseRetryAfter('', NOW), undefined);
  assert.equal(parseRetryAfter('soon', NOW), undefined);
  assert.equal(parseRetryAfter('12abc', NOW), undefined);
  assert.equal(parseRetryAfter('1e3', NOW), undefined);
});

test('parseRetryAfter: values that are neither delay-seconds nor an HTTP-date are undefined', () => {
  // RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds (1*DIGIT). A negative or
  // fractional number is neither, and must not turn into "retry at once".
  assert.equal(parseRetryAfter('-5', NOW), undefined);
  assert.equal(parseRetryAfter('1.5', NOW), undefined);
});
