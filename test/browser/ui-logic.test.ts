/**
 * The dashboard's pure logic, without a browser: the SSE parser, how a body is shown, and how
 * live changes land in the events list.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { base64ToBytes, hexDump, viewBody } from '../../server/dashboard/ui/body-format.ts';
import { applyLive, appendPage, type EventsList } from '../../server/dashboard/ui/events-state.ts';
import type { EventView } from '../../server/dashboard/ui/model.ts';
import { SseParser, type SseMessage } from '../../server/dashboard/ui/sse-parser.ts';

describe('SseParser', () => {
  const parse = (chunks: string[]): SseMessage[] => {
    const out: SseMessage[] = [];
    const parser = new SseParser((m) => out.push(m));
    for (const c of chunks) parser.push(c);
    return out;
  };

  test('reads the relay stream: comments skipped, named events, one message per blank line', () => {
    const text =
      ': connected\n\nevent: event\ndata: {"id":"evt_1"}\n\n: keepalive\n\n' +
      'event: event\ndata: {"id":"evt_2"}\n\n';
    assert.deepEqual(parse([text]), [
      { event: 'event', data: '{"id":"evt_1"}' },
      { event: 'event', data: '{"id":"evt_2"}' },
    ]);
  });

  test('messages split anywhere across chunks, CRLF and CR line ends, multi-line data', () => {
    const text = 'event: event\r\ndata: a\r\ndata:b\r\rdata: c\n\n';
    const whole = parse([text]);
    assert.deepEqual(whole, [
      { event: 'event', data: 'a\nb' },
      { event: 'message', data: 'c' },
    ]);
    // Every split point, including between '\r' and '\n', gives the same messages.
    for (let i = 1; i < text.length; i++) {
      assert.deepEqual(parse([text.slice(0, i), text.slice(i)]), whole, `split at ${i}`);
    }
    assert.deepEqual(parse([...text]), whole, 'one character at a time');
  });

  test('an event without data dispatches nothing, and an unfinished one waits', () => {
    assert.deepEqual(parse(['event: event\n\n', 'data: x\n']), []);
  });
});

describe('viewBody', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  test('JSON is pretty-printed, by content type or by its first character', () => {
    assert.deepEqual(viewBody(bytes('{"a":[1,2]}')), {
      kind: 'json',
      text: '{\n  "a": [\n    1,\n    2\n  ]\n}',
    });
    assert.deepEqual(viewBody(bytes('42'), 'application/vnd.api+json'), {
      kind: 'json',
      text: '42',
    });
    assert.deepEqual(viewBody(bytes('42'), 'text/plain'), {
      kind: 'text',
      text: '42',
      truncated: false,
    });
  });

  test('broken JSON and form bodies are text, kept byte for byte', () => {
    assert.deepEqual(viewBody(bytes('{"a": '), 'application/json'), {
      kind: 'text',
      text: '{"a": ',
      truncated: false,
    });
    assert.deepEqual(viewBody(bytes('a=1&b=é\n')), {
      kind: 'text',
      text: 'a=1&b=é\n',
      truncated: false,
    });
  });

  test('invalid UTF-8 or control bytes are binary, shown as a hex dump', () => {
    const invalid = viewBody(new Uint8Array([0xff, 0xfe, 0x41]));
    assert.equal(invalid.kind, 'binary');
    const nul = viewBody(bytes('abc\u0000def'));
    assert.equal(nul.kind, 'binary');
    assert.deepEqual(viewBody(new Uint8Array()), { kind: 'empty' });
  });

  test('the hex dump: offset, two groups of eight bytes, printable ASCII', () => {
    const data = new Uint8Array(20).map((_, i) => 0x3c + i);
    assert.equal(
      hexDump(data),
      '00000000  3c 3d 3e 3f 40 41 42 43  44 45 46 47 48 49 4a 4b  |<=>?@ABCDEFGHIJK|\n' +
        '00000010  4c 4d 4e 4f                                       |LMNO|',
    );
    assert.equal(hexDump(new Uint8Array([0, 0x7f, 0x20])).endsWith('|.. |'), true);
  });

  test('large binary bodies are cut at 64 KiB', () => {
    const big = viewBody(new Uint8Array(70_000).fill(0xff));
    assert.equal(big.kind, 'binary');
    assert.ok(big.kind === 'binary' && big.truncated);
    assert.equal(big.kind === 'binary' && big.dump.split('\n').length, 65_536 / 16);
  });

  test('base64ToBytes decodes what the API sends', () => {
    assert.deepEqual(
      [...base64ToBytes(Buffer.from([0, 1, 254, 255]).toString('base64'))],
      [0, 1, 254, 255],
    );
  });
});

describe('applyLive', () => {
  const ev = (n: number, over: Partial<EventView> = {}): EventView => ({
    id: `evt_${String(n).padStart(4, '0')}`,
    channelId: 'ch_a',
    status: 'queued',
    receivedAt: null,
    method: 'POST',
    path: '/',
    query: '',
    size: 0,
    attemptCount: 0,
    nextAttemptAt: null,
    reason: null,
    attempts: [],
    ...over,
  });
  const all = { channel: '', status: '' };
  const ids = (l: EventsList) => l.rows.map((r) => r.id);

  test('a new event goes on top and counts as added', () => {
    const list = { rows: [ev(2), ev(1)], next: null };
    const { list: out, change } = applyLive(list, ev(3), all);
    assert.equal(change, 'added');
    assert.deepEqual(ids(out), ['evt_0003', 'evt_0002', 'evt_0001']);
  });

  test('a change to a shown event updates its row in place, even out of the filter', () => {
    const list = { rows: [ev(2, { status: 'failed' }), ev(1)], next: null };
    const { list: out, change } = applyLive(list, ev(2, { status: 'queued' }), {
      channel: '',
      status: 'failed',
    });
    assert.equal(change, 'updated');
    assert.deepEqual(ids(out), ['evt_0002', 'evt_0001']);
    assert.equal(out.rows[0]!.status, 'queued');
    assert.equal(list.rows[0]!.status, 'failed', 'the old list is not modified');
  });

  test('events outside the filter, or on a page not loaded, are ignored', () => {
    const list = { rows: [ev(5), ev(4)], next: 'evt_0004' };
    assert.equal(
      applyLive(list, ev(6, { channelId: 'ch_b' }), { channel: 'ch_a', status: '' }).change,
      'ignored',
    );
    assert.equal(
      applyLive(list, ev(7, { status: 'delivered' }), { channel: '', status: 'failed' }).change,
      'ignored',
    );
    assert.equal(applyLive(list, ev(1, { status: 'failed' }), all).change, 'ignored');
  });

  test('an older event that now matches is inserted in order when its page is loaded', () => {
    const list = { rows: [ev(5), ev(2)], next: null };
    const { list: out, change } = applyLive(list, ev(3, { status: 'failed' }), {
      channel: '',
      status: 'failed',
    });
    assert.equal(change, 'updated');
    assert.deepEqual(ids(out), ['evt_0005', 'evt_0003', 'evt_0002']);
  });

  test('appendPage skips rows a live change already brought in', () => {
    const list = { rows: [ev(5), ev(4)], next: 'evt_0004' };
    const out = appendPage(list, { rows: [ev(4), ev(3)], next: null });
    assert.deepEqual(ids(out), ['evt_0005', 'evt_0004', 'evt_0003']);
    assert.equal(out.next, null);
  });
});
