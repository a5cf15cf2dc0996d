/**
 * Admin subcommands of the relay binary. Each one is a call to the admin API of a running
 * relay: human tables by default, `--json` for scripts (stdout then holds JSON only). Every
 * command is one entry of COMMANDS, with its own flags and help; adding a flag is one line.
 */
import {
  readHttpUrl,
  parseFlags,
  shellQuote,
  unknownCommand,
  type Flags,
} from '../../shared/cli.ts';
import { ConfigError } from '../../shared/errors.ts';
import { isObject, type Obj } from '../../shared/fields.ts';
import { channelOptions } from './channel-options.ts';
import { Client, resolveChannelSecret, resolveToken } from './client.ts';
import { flagLines } from './flag-help.ts';
import { agentId, agentNames, channelNames } from './lookup.ts';
import {
  EVENT_COLUMNS,
  eventRow,
  list,
  printable,
  renderChannel,
  renderEvent,
  str,
} from './render.ts';
import { tail } from './tail.ts';
import { table } from './table.ts';

export { resolveChannelSecret, resolveToken } from './client.ts';

/** Flags every admin command takes, with their help. */
const COMMON: Flags = {
  relay: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
};

const CHANNEL_FLAGS: Flags = {
  verify: { type: 'string' },
  secret: { type: 'string' },
  'secret-file': { type: 'string' },
  ordered: { type: 'boolean' },
  unordered: { type: 'boolean' },
  'ordering-key': { type: 'string' },
  'sync-timeout-ms': { type: 'string' },
  async: { type: 'boolean' },
  'retry-delays': { type: 'string' },
  'rate-limit': { type: 'string' },
  'max-body-bytes': { type: 'string' },
  methods: { type: 'string' },
  paths: { type: 'string' },
};

interface Context {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  arg: string | undefined;
  client: Client;
  env: NodeJS.ProcessEnv;
  /** How the user started this program (`npm run relay --`, `postern-relay`, …). */
  program: string;
  /** The same way of starting the agent, for printed next steps. */
  agentProgram: string;
  out: (human: string, json: unknown) => void;
}

interface Command {
  /** Arguments after the command's words, as shown in help. */
  args: string;
  summary: string;
  flags: Flags;
  run: (c: Context) => Promise<void>;
}

const enc = encodeURIComponent;

function need(value: string | undefined, what: string): string {
  if (!value) throw new ConfigError(`missing ${what}; see --help`);
  return value;
}

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The commands an operator types after `agent add` or `agent code`, working as printed. */
function pairSteps(c: Context, a: Obj): string {
  const code = str(a['pairingCode']);
  const relayUrl = shellQuote(str(a['relayUrl']));
  return (
    `One-time pairing code (expires ${str(a['expiresAt'])}): ${code}\n` +
    `On the agent's host:\n` +
    `  ${c.agentProgram} pair --relay ${relayUrl} --code ${code} --state-dir ./agent-state\n` +
    `then, with its routes in agent.yaml (see the README, "Agent"):\n` +
    `  ${c.agentProgram} run --config agent.yaml --state-dir ./agent-state\n`
  );
}

const COMMANDS: Record<string, Command> = {
  'channel create': {
    args: 'NAME [channel options]',
    summary: 'create a channel; prints its ingress URL',
    flags: CHANNEL_FLAGS,
    run: async (c) => {
      const body: Obj = { name: need(c.arg, 'channel NAME'), ...channelOptions(withSecret(c)) };
      const ch = await c.client.call('POST', '/api/channels', body);
      c.out(
        `Created channel ${str(ch['name'])} (${str(ch['id'])})\nIngress URL: ${str(ch['ingressUrl'])}\n`,
        ch,
      );
    },
  },
  'channel update': {
    args: 'ID|NAME [channel options]',
    summary: "change a channel's settings",
    flags: CHANNEL_FLAGS,
    run: async (c) => {
      const body = channelOptions(withSecret(c));
      if (Object.keys(body).length === 0)
        throw new ConfigError('channel update needs at least one option; see --help');
      const ch = await c.client.call(
        'PATCH',
        `/api/channels/${enc(need(c.arg, 'channel ID or NAME'))}`,
        body,
      );
      c.out(`Updated channel ${str(ch['name'])} (${str(ch['id'])})\n`, ch);
    },
  },
  'channel list': {
    args: '',
    summary: 'the channels',
    flags: {},
    run: async (c) => {
      const r = await c.client.call('GET', '/api/channels');
      const rows = list(r['channels']).map((ch) => [
        str(ch['id']),
        str(ch['name']),
        isObject(ch['verify']) ? str(ch['verify']['provider']) : 'none',
        isObject(ch['response']) ? str(ch['response']['mode']) : '-',
        str(ch['ingressUrl']),
      ]);
      c.out(table(['ID', 'NAME', 'VERIFY', 'MODE', 'INGRESS URL'], rows), r);
    },
  },
  'channel show': {
    args: 'ID|NAME',
    summary: "a channel's settings (secrets are never shown)",
    flags: {},
    run: async (c) => {
      const ch = await c.client.call(
        'GET',
        `/api/channels/${enc(need(c.arg, 'channel ID or NAME'))}`,
      );
      c.out(renderChannel(ch), ch);
    },
  },
  'channel delete': {
    args: 'ID|NAME',
    summary: 'delete a channel',
    flags: {},
    run: async (c) => {
      const arg = need(c.arg, 'channel ID or NAME');
      await c.client.call('DELETE', `/api/channels/${enc(arg)}`);
      c.out(`Deleted channel ${arg}\n`, { deleted: arg });
    },
  },
  'agent add': {
    args: 'NAME --channel ID|NAME [--channel …]',
    summary: 'add an agent granted those channels; prints a one-time pairing code',
    flags: { channel: { type: 'string', multiple: true } },
    run: async (c) => {
      const channels = strings(c.values['channel']);
      if (channels.length === 0)
        throw new ConfigError('agent add needs at least one --channel ID|NAME');
      const a = await c.client.call('POST', '/api/agents', {
        name: need(c.arg, 'agent NAME'),
        channels,
      });
      c.out(`Added agent ${str(a['name'])} (${str(a['id'])}).\n${pairSteps(c, a)}`, a);
    },
  },
  'agent update': {
    args: 'ID|NAME --channel ID|NAME [--channel …]',
    summary: 'change the channels an agent is granted (it reconnects)',
    flags: { channel: { type: 'string', multiple: true } },
    run: async (c) => {
      const channels = strings(c.values['channel']);
      if (channels.length === 0)
        throw new ConfigError('agent update needs at least one --channel ID|NAME');
      const id = await agentId(c.client, need(c.arg, 'agent ID or NAME'));
      const a = await c.client.call('PATCH', `/api/agents/${enc(id)}`, { channels });
      const names = await channelNames(c.client);
      const shown = strings(a['channels']).map((ch) => names.get(ch) ?? ch);
      c.out(`Agent ${str(a['name'])} now has channels ${shown.join(', ')}\n`, a);
    },
  },
  'agent code': {
    args: 'ID|NAME',
    summary: 'a new one-time pairing code, to pair an agent again',
    flags: {},
    run: async (c) => {
      const id = await agentId(c.client, need(c.arg, 'agent ID or NAME'));
      const a = await c.client.call('POST', `/api/agents/${enc(id)}/pairing-code`);
      c.out(`New pairing code for agent ${str(a['name'])} (${id}).\n${pairSteps(c, a)}`, a);
    },
  },
  'agent list': {
    args: '',
    summary: 'the agents, their channels and whether they are connected',
    flags: {},
    run: async (c) => {
      const r = await c.client.call('GET', '/api/agents');
      const names = await channelNames(c.client);
      const rows = list(r['agents']).map((a) => [
        str(a['id']),
        str(a['name']),
        a['connected'] ? 'yes' : 'no',
        a['paired'] ? 'yes' : 'no',
        str(a['lastSeenAt']),
        str(a['version']),
        strings(a['channels'])
          .map((ch) => names.get(ch) ?? ch)
          .join(','),
      ]);
      c.out(
        table(['ID', 'NAME', 'CONNECTED', 'PAIRED', 'LAST SEEN', 'VERSION', 'CHANNELS'], rows),
        r,
      );
    },
  },
  'agent revoke': {
    args: 'ID|NAME',
    summary: 'revoke an agent; its tunnels are closed',
    flags: {},
    run: async (c) => {
      const id = await agentId(c.client, need(c.arg, 'agent ID or NAME'));
      await c.client.call('DELETE', `/api/agents/${enc(id)}`);
      c.out(`Revoked agent ${c.arg} (${id}); its tunnels are closed\n`, { revoked: id });
    },
  },
  'events list': {
    args: '[--channel ID|NAME] [--status S] [--since T] [--until T] [--search TEXT] [--limit N] [--before ID]',
    summary: 'events, newest first, with why each unfinished one waits',
    flags: {
      channel: { type: 'string' },
      status: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      search: { type: 'string' },
      limit: { type: 'string' },
      before: { type: 'string' },
    },
    run: async (c) => {
      const q = new URLSearchParams();
      for (const k of ['channel', 'status', 'since', 'until', 'search', 'limit', 'before']) {
        const v = text(c.values[k]);
        if (v) q.set(k === 'search' ? 'q' : k, v);
      }
      const r = await c.client.call('GET', `/api/events?${q}`);
      if (c.values['json']) return c.out('', r);
      const names = await channelNames(c.client);
      const rows = list(r['events']).map((e) => eventRow(e, names));
      const examined =
        typeof r['examined'] === 'number' ? `examined ${r['examined']} events; ` : '';
      const more = r['next']
        ? `(${examined}more: --before ${str(r['next'])})\n`
        : examined
          ? `(${examined}no more)\n`
          : '';
      c.out(table(EVENT_COLUMNS, rows) + more, r);
    },
  },
  'events show': {
    args: 'ID [--raw]',
    summary: 'one event: why it waits, headers, the body decoded, each attempt and its answer',
    flags: { raw: { type: 'boolean' } },
    run: async (c) => {
      const e = await c.client.call('GET', `/api/events/${enc(need(c.arg, 'event ID'))}`);
      if (c.values['raw']) {
        if (c.values['json']) throw new ConfigError('events show: --raw and --json: choose one');
        process.stdout.write(
          typeof e['body'] === 'string' ? Buffer.from(e['body'], 'base64') : Buffer.alloc(0),
        );
        return;
      }
      if (c.values['json']) return c.out('', e);
      const [channels, agents] = await Promise.all([channelNames(c.client), agentNames(c.client)]);
      c.out(renderEvent(e, channels, agents), e);
    },
  },
  'events replay': {
    args: 'ID | --channel ID|NAME [--status failed|delivered] [--since ISO] [--until ISO]',
    summary: 'queue an event again, or every event matching the filter',
    flags: {
      channel: { type: 'string' },
      status: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
    },
    run: async (c) => {
      if (c.arg === undefined) {
        if (!c.values['channel'] && !c.values['status']) {
          throw new ConfigError(
            'events replay needs an event ID, or a filter: --channel and/or --status',
          );
        }
        const body: Obj = {};
        for (const k of ['channel', 'status', 'since', 'until']) {
          const v = text(c.values[k]);
          if (v) body[k] = v;
        }
        const r = await c.client.call('POST', '/api/events/replay', body);
        return c.out(`Queued ${str(r['queued'])} events again\n`, r);
      }
      const e = await c.client.call('POST', `/api/events/${enc(c.arg)}/replay`);
      c.out(`Queued ${str(e['id'])} again\n`, e);
    },
  },
  'events skip': {
    args: 'ID',
    summary: 'mark an event failed now, to unblock an ordered channel (replayable)',
    flags: {},
    run: async (c) => {
      const e = await c.client.call('POST', `/api/events/${enc(need(c.arg, 'event ID'))}/skip`);
      c.out(`Skipped ${str(e['id'])}: now ${str(e['status'])}\n`, e);
    },
  },
  tail: {
    args: '[--channel ID|NAME]',
    summary: 'one line per event as it arrives or changes state (--json: one JSON per line)',
    flags: { channel: { type: 'string' } },
    run: (c) => tail(c.client, text(c.values['channel']), Boolean(c.values['json'])),
  },
};

export const ADMIN_USAGE = `Admin commands (talk to a running relay; COMMAND --help for its flags):
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${`${name} ${c.args}`.trimEnd()}\n      ${c.summary}`)
  .join('\n')}
  Every admin command takes:
${flagLines(COMMON)}`;

/** The help of one command (or of a group, e.g. `channel`). */
function commandHelp(program: string, key: string): string {
  const matching = Object.entries(COMMANDS).filter(
    ([name]) => name === key || name.startsWith(`${key} `),
  );
  return (
    matching
      .map(
        ([name, c]) =>
          `Usage: ${program} ${`${name} ${c.args}`.trimEnd()}\n  ${c.summary}\n` +
          (Object.keys(c.flags).length > 0 ? `${flagLines(c.flags)}\n` : ''),
      )
      .join('\n') + `  Every admin command takes:\n${flagLines(COMMON)}\n`
  );
}

function withSecret(c: Context) {
  const v = c.values;
  return {
    ...Object.fromEntries(
      Object.keys(CHANNEL_FLAGS).map((k) => [k, v[k] as string | boolean | undefined]),
    ),
    secret: resolveChannelSecret(
      { secret: text(v['secret']), 'secret-file': text(v['secret-file']) },
      (line) => process.stderr.write(line),
    ),
  } as Parameters<typeof channelOptions>[0];
}

/** The admin command words, for `--help` and for an unknown-command suggestion. */
export const ADMIN_GROUPS = [...new Set(Object.keys(COMMANDS).map((k) => k.split(' ')[0]!))];

export async function runAdminCommand(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  program: { relay: string; agent: string },
): Promise<void> {
  const grouped = command !== 'tail';
  const sub = grouped && args[0] !== undefined && !args[0].startsWith('-') ? args[0] : undefined;
  const rest = sub === undefined ? args : args.slice(1);
  const wantsHelp = args.includes('--help') || args.includes('-h');
  if (grouped && sub === undefined) {
    if (wantsHelp) return void process.stdout.write(commandHelp(program.relay, command));
    throw new ConfigError(
      `"${command}" needs a subcommand: ${Object.keys(COMMANDS)
        .filter((k) => k.startsWith(`${command} `))
        .map((k) => k.split(' ')[1])
        .join(', ')} (${program.relay} ${command} --help)`,
    );
  }
  const key = grouped ? `${command} ${sub}` : command;
  const cmd = COMMANDS[key];
  if (!cmd) {
    unknownCommand(
      program.relay,
      key,
      Object.keys(COMMANDS).filter((k) => k.startsWith(`${command} `)),
    );
  }
  const help = `${program.relay} ${key} --help`;
  const elsewhere = Object.values(COMMANDS).flatMap((c) => Object.keys(c.flags));
  const { values, positionals } = parseFlags(
    rest,
    { ...COMMON, ...cmd.flags },
    key,
    help,
    elsewhere,
  );
  if (wantsHelp) return void process.stdout.write(commandHelp(program.relay, key));
  if (positionals.length > 1) {
    throw new ConfigError(`${key}: unexpected argument "${printable(positionals[1]!)}" (${help})`);
  }
  const relayUrl = text(values['relay']) ?? (env['POSTERN_RELAY_URL'] || 'http://localhost:8080');
  readHttpUrl(values['relay'] === undefined ? 'POSTERN_RELAY_URL' : '--relay', relayUrl);
  const client = new Client(
    relayUrl,
    resolveToken(
      {
        token: text(values['token']),
        'token-file': text(values['token-file']),
        ...(text(values['data-dir']) === undefined
          ? {}
          : { 'data-dir': text(values['data-dir'])! }),
      },
      env,
      (line) => process.stderr.write(line),
    ),
  );
  await cmd.run({
    values,
    arg: positionals[0],
    client,
    env,
    program: program.relay,
    agentProgram: program.agent,
    out: (human, json) =>
      void process.stdout.write(values['json'] ? `${JSON.stringify(json, null, 2)}\n` : human),
  });
}
