/**
 * The dashboard's pure logic, without a browser: the SSE parser, how a body is shown, and how
 * live changes land in the events list.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { base64ToBytes, hexDump, viewBody } from '../../server/dashboard/ui/body-format.ts';
import {
  channelFields,
  draftOf,
  formatDelays,
  parseDelays,
} from '../../server/dashboard/ui/channel-draft.ts';
import {
  bodyFileName,
  curlCommand,
  inlineBodyText,
  shellQuote,
} from '../../server/dashboard/ui/curl.ts';
import {
  canReplay,
  decodeChannel,
  decodeEvent,
  STATUSES,
  type Channel,
} from '../../server/dashboard/ui/model.ts';
import {
  applyLive,
  appendPage,
  localTimeValue,
  parseLocalTime,
  type EventsList,
} from '../../server/dashboard/ui/events-state.ts';
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
    waiting: null,
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
    assert.equal(out.examined, undefined, 'not a search');
  });

  test('a search adds no live event (only the relay reads requests); a range checks its time', () => {
    const list = { rows: [ev(5)], next: null };
    const at = (iso: string) => ev(6, { receivedAt: iso });
    assert.equal(applyLive(list, ev(6), { ...all, q: 'x' }).change, 'ignored');
    assert.equal(applyLive(list, ev(6), { ...all, q: '' }).change, 'added');
    const range = {
      ...all,
      since: Date.parse('2025-01-01T00:00:00Z'),
      until: Date.parse('2025-01-02T00:00:00Z'),
    };
    assert.equal(applyLive(list, at('2025-01-01T00:00:00.000Z'), range).change, 'added');
    assert.equal(applyLive(list, at('2025-01-02T00:00:00.000Z'), range).change, 'ignored');
    assert.equal(applyLive(list, at('2024-12-31T23:59:59.999Z'), range).change, 'ignored');
    assert.equal(applyLive(list, ev(6), range).change, 'ignored', 'no receivedAt: not in a range');
  });

  test('appendPage adds up the events a search examined', () => {
    const list = { rows: [ev(5)], next: 'evt_0005', examined: 5000 };
    const out = appendPage(list, { rows: [], next: 'evt_0001', examined: 5000 });
    assert.equal(out.examined, 10_000);
    assert.equal(out.next, 'evt_0001');
  });

  test('datetime-local values: local time both ways, anything else is no bound', () => {
    const ms = new Date(2026, 10, 30, 1, 2, 3).getTime();
    assert.equal(localTimeValue(ms), '2026-11-30T01:02:03');
    assert.equal(parseLocalTime('2026-11-30T01:02:03'), ms);
    assert.equal(parseLocalTime('2026-11-30T01:02'), ms - 3000);
    assert.equal(localTimeValue(null), '');
    for (const bad of ['', 'yesterday', '2026-11-30', '2026-13-45T99:99']) {
      assert.equal(parseLocalTime(bad), null, bad);
    }
  });
});

describe('event model', () => {
  const base = {
    id: 'evt_1',
    channelId: 'ch_a',
    status: 'queued',
    receivedAt: '2025-01-01T00:00:00.000Z',
    method: 'POST',
    path: '/x',
    query: '',
    size: 2,
    attemptCount: 1,
    nextAttemptAt: null,
  };

  test('waiting, attempt answers and replay numbers are read; absent ones are null and 0', () => {
    const e = decodeEvent({
      ...base,
      waiting: {
        reason: 'retry',
        message: 'Retrying at 10:00 after: app answered 500',
        retryAt: 5,
      },
      attempts: [
        { at: null, agentId: 'ag_1', outcome: 'failed', status: 500, durationMs: 3, error: 'x' },
        {
          at: null,
          agentId: 'ag_1',
          outcome: 'failed',
          status: 500,
          durationMs: 3,
          error: 'x',
          replay: 2,
          response: { headers: [['a', 'b']], body: 'aGk=', bodyBytes: 2, truncated: false },
        },
      ],
    });
    assert.equal(e.waiting?.message, 'Retrying at 10:00 after: app answered 500');
    assert.equal(e.waiting?.retryAt, 5);
    assert.equal(e.waiting?.blockedBy, null);
    assert.equal(e.attempts[0]!.replay, 0);
    assert.equal(e.attempts[0]!.response, null);
    assert.equal(e.attempts[1]!.replay, 2);
    assert.deepEqual(e.attempts[1]!.response?.headers, [['a', 'b']]);
    assert.equal(decodeEvent(base).waiting, null);
  });

  test('malformed answers are refused, naming the field', () => {
    assert.throws(() => decodeEvent({ ...base, waiting: { reason: 'retry' } }), /message/);
    const attempt = { at: null, agentId: 'a', outcome: 'failed', status: 1, durationMs: 1 };
    assert.throws(
      () => decodeEvent({ ...base, attempts: [{ ...attempt, response: { headers: [[1, 2]] } }] }),
      /headers\[0\]/,
    );
  });

  test('filtered is offered as a status; rejected and delivering events cannot be replayed', () => {
    assert.ok((STATUSES as readonly string[]).includes('filtered'));
    assert.deepEqual(
      STATUSES.filter((s) => !canReplay(s)),
      ['delivering', 'rejected'],
    );
  });
});

describe('channel form', () => {
  const api = {
    id: 'ch_1',
    name: 'github',
    ingressUrl: 'http://localhost:8080/h/ch_1',
    verify: {
      provider: 'hmac',
      header: 'X-Sig',
      algorithm: 'sha1',
      encoding: 'base64',
      rotating: true,
    },
    response: { mode: 'sync', timeoutMs: 5000 },
    retry: { delaysMs: [5000, 300_000, 86_400_000] },
    ordered: true,
    orderingKey: { jsonField: 'repository.full_name' },
    rateLimit: { perSecond: 10, burst: 20 },
    maxBodyBytes: 1024,
    methods: null,
    paths: null,
    createdAt: '2025-01-01T00:00:00.000Z',
  };
  const channel: Channel = decodeChannel(api);

  test('delays read and written with units', () => {
    assert.equal(
      formatDelays([5000, 300_000, 1_800_000, 7_200_000, 86_400_000, 250]),
      '5s, 5m, 30m, 2h, 24h, 250ms',
    );
    assert.deepEqual(
      parseDelays('5s, 5m 1.5h,250ms 1d 2min'),
      [5000, 300_000, 5_400_000, 250, 86_400_000, 120_000],
    );
    assert.deepEqual(parseDelays('  '), []);
    assert.throws(() => parseDelays('5s, 10'), /"10" is not a delay/);
  });

  test('an unchanged form changes nothing; each change sends only its field', () => {
    const d = draftOf(channel);
    assert.equal(d.secret, '', 'secrets are never filled in');
    assert.equal(d.changeVerify, false);
    assert.deepEqual(channelFields(d, channel), {});
    assert.deepEqual(channelFields({ ...d, retry: '1s, 1m' }, channel), {
      retry: { delaysMs: [1000, 60_000] },
    });
    assert.deepEqual(channelFields({ ...d, ordered: false }, channel), {
      ordered: false,
      orderingKey: null,
    });
    assert.deepEqual(channelFields({ ...d, perSecond: '' }, channel), { rateLimit: null });
    assert.deepEqual(channelFields({ ...d, mode: 'async' }, channel), {
      response: { mode: 'async', timeoutMs: 10_000 },
    });
    assert.deepEqual(channelFields({ ...d, keyKind: 'header', keyValue: 'X-Repo' }, channel), {
      orderingKey: { header: 'X-Repo' },
    });
  });

  test('methods and paths as comma lists: "" or an empty item is the empty suffix', () => {
    const d = draftOf(channel);
    assert.deepEqual(channelFields({ ...d, methods: 'post, Get' }, channel), {
      methods: ['POST', 'GET'],
    });
    assert.deepEqual(channelFields({ ...d, paths: '"", /push ,/github/*' }, channel), {
      paths: ['', '/push', '/github/*'],
    });
    assert.deepEqual(channelFields({ ...d, paths: ', /push' }, channel), { paths: ['', '/push'] });
    assert.throws(() => channelFields({ ...d, methods: 'POST,' }, channel), /Methods/);
    assert.deepEqual(channelFields({ ...d, maxBodyBytes: '2048' }, channel), {
      maxBodyBytes: 2048,
    });
    const withPaths = decodeChannel({ ...api, methods: ['POST'], paths: ['', '/push'] });
    const shown = draftOf(withPaths);
    assert.equal(shown.paths, '"", /push');
    assert.deepEqual(channelFields(shown, withPaths), {}, 'shown as it was: no change');
  });

  test('verification is sent whole, with its secrets, only when asked to change', () => {
    const d = { ...draftOf(channel), changeVerify: true };
    assert.throws(() => channelFields(d, channel), /Secret/);
    assert.deepEqual(channelFields({ ...d, secret: 's3cret', prefix: 'sha1=' }, channel), {
      verify: {
        provider: 'hmac',
        secret: 's3cret',
        header: 'X-Sig',
        algorithm: 'sha1',
        encoding: 'base64',
        prefix: 'sha1=',
      },
    });
    assert.deepEqual(channelFields({ ...d, provider: '' }, channel), { verify: null });
    assert.throws(
      () => channelFields({ ...d, provider: 'meta', secret: 'a' }, channel),
      /Verify token/,
    );
    assert.deepEqual(
      channelFields(
        { ...d, provider: 'stripe', secret: 'whsec_new', previousSecret: 'whsec_old' },
        channel,
      ),
      { verify: { provider: 'stripe', secret: 'whsec_new', previousSecret: 'whsec_old' } },
    );
  });

  test('a new channel sends every field, and no verify when none is chosen', () => {
    const d = { ...draftOf(null), name: 'new', retry: '' };
    assert.deepEqual(channelFields(d, null), {
      name: 'new',
      response: { mode: 'async', timeoutMs: 10_000 },
      retry: { delaysMs: [] },
      ordered: false,
      orderingKey: null,
      rateLimit: null,
      maxBodyBytes: 26_214_400,
      methods: null,
      paths: null,
    });
    assert.throws(() => channelFields({ ...d, name: ' ' }, null), /Name/);
    assert.throws(() => channelFields({ ...d, perSecond: 'ten' }, null), /Rate limit/);
  });
});

describe('copy as curl', () => {
  test('every argument is single-quoted, quotes inside too', () => {
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    const cmd = curlCommand({
      method: 'POST',
      url: 'http://localhost:8080/h/ch_1/x?a=1&b=2',
      headers: [
        ['host', 'localhost:8080'],
        ['Content-Length', '5'],
        ['x-evil', '$(rm -rf ~)'],
      ],
      bodyText: "a'b\n",
      bodyBytes: 4,
      bodyFile: 'evt_1.txt',
    });
    assert.equal(
      cmd,
      "curl -X 'POST' 'http://localhost:8080/h/ch_1/x?a=1&b=2' -H 'x-evil: $(rm -rf ~)' " +
        "--data-binary 'a'\\''b\n'",
    );
  });

  test('binary or large bodies come from the downloaded file; an empty body sends none', () => {
    const binary = new Uint8Array([0x00, 0xff]);
    assert.equal(inlineBodyText(binary), null);
    assert.equal(inlineBodyText(new Uint8Array(70_000).fill(0x61)), null);
    assert.equal(inlineBodyText(new TextEncoder().encode('é\n')), 'é\n');
    const base = { method: 'GET', url: 'http://h/', headers: [], bodyFile: 'f.bin' };
    assert.equal(
      curlCommand({ ...base, bodyText: null, bodyBytes: 2 }),
      "curl -X 'GET' 'http://h/' --data-binary '@f.bin'",
    );
    assert.equal(curlCommand({ ...base, bodyText: '', bodyBytes: 0 }), "curl -X 'GET' 'http://h/'");
  });

  test('the download is named after the event, by content type', () => {
    assert.equal(bodyFileName('evt_1', 'application/json; charset=utf-8'), 'evt_1.json');
    assert.equal(bodyFileName('evt_1', 'application/x-www-form-urlencoded'), 'evt_1.txt');
    assert.equal(bodyFileName('evt_1', ''), 'evt_1.bin');
    assert.equal(bodyFileName('../x', ''), '___x.bin');
  });
});
