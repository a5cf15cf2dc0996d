/** `tail`: the admin API's event stream, one line per event, channels by name. */
import { ConfigError } from '../../shared/errors.ts';
import { isObject } from '../../shared/fields.ts';
import type { Client } from './client.ts';
import { channelNames } from './lookup.ts';
import { eventRow, type Names } from './render.ts';

/**
 * Follows `GET /api/stream` and prints one line per event as it arrives or changes state, with
 * the channel's name. Reconnects (after a short pause) when the relay restarts; Ctrl-C stops it.
 */
export async function tail(
  client: Client,
  channel: string | undefined,
  json: boolean,
): Promise<void> {
  const q = channel ? `?channel=${encodeURIComponent(channel)}` : '';
  let announced = false;
  let names: Names = new Map();
  const looked = new Set<string>();
  for (;;) {
    try {
      if (!json) names = await channelNames(client);
      const chunks = await client.stream(`/api/stream${q}`);
      if (!announced) process.stderr.write('tailing events live (Ctrl-C to stop)…\n');
      announced = true;
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of chunks) {
        buffered += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const message = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = message
            .split('\n')
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice(6))
            .join('\n');
          if (!data) continue;
          const e: unknown = JSON.parse(data);
          if (!isObject(e)) continue;
          if (json) {
            process.stdout.write(`${JSON.stringify(e)}\n`);
            continue;
          }
          // A channel created since the stream opened: learn its name once.
          const id = e['channelId'];
          if (typeof id === 'string' && !names.has(id) && !looked.has(id)) {
            looked.add(id); // a deleted channel is looked for once, not on every line
            names = await channelNames(client).catch(() => names);
          }
          process.stdout.write(`${eventRow(e, names).join('  ').trimEnd()}\n`);
        }
      }
      process.stderr.write('the relay closed the stream; reconnecting…\n');
    } catch (err) {
      if (err instanceof ConfigError && !announced) throw err;
      process.stderr.write(`stream interrupted (${(err as Error).message}); reconnecting…\n`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
