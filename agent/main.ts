/**
 * The agent binary: `pair`, `run`, `--version`. The only agent module that reads argv and the
 * environment.
 */
import { parseFlags, readHttpUrl, shellQuote, unknownCommand } from '../shared/cli.ts';
import { ConfigError, isPosternError } from '../shared/errors.ts';
import { createLogger } from '../shared/logging.ts';
import { VERSION } from '../shared/version.ts';
import { createAgent } from './agent.ts';
import {
  configFromFlags,
  loadAgentConfig,
  parseRouteFlag,
  type AgentConfig,
  type RouteFlag,
} from './config.ts';
import { defaultStateDir, homeStateDir, loadIdentity } from './identity.ts';
import { programName, stateDirArgs } from './next-steps.ts';
import { pair } from './pair.ts';

/** Each command's flags: one line per flag (parseArgs options). */
const PAIR_FLAGS = {
  relay: { type: 'string' },
  code: { type: 'string' },
  'state-dir': { type: 'string' },
  force: { type: 'boolean' },
} as const;
const RUN_FLAGS = {
  config: { type: 'string' },
  route: { type: 'string', multiple: true },
  'state-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const;
const COMMANDS = ['pair', 'run', '--version'];

const PAIR_USAGE = `pair --relay URL --code CODE [--state-dir DIR] [--force]
        make this agent's key pair and pair it with the relay using a one-time code
        (--force: replace an identity already in the state dir)`;
const RUN_USAGE = `run [--config agent.yaml] [--route CHANNEL=URL ...] [--state-dir DIR] [--log-level LEVEL]
        connect to the relay and deliver webhooks to the routes in the config file and/or
        the --route flags (repeatable); SIGHUP reloads the config file`;
const DEFAULTS = `  --state-dir defaults to POSTERN_AGENT_STATE_DIR or ~/.postern-agent
  --log-level defaults to POSTERN_LOG_LEVEL or info`;

const usage = (program: string) => `Usage: ${program} <command> [options]

  ${PAIR_USAGE}
  ${RUN_USAGE}
  --version
        print the version

${DEFAULTS}
  ${program} <command> --help prints that command's options
`;

/** `pair --help`, `run --help`: that command alone. */
const commandUsage = (program: string, text: string) =>
  `Usage: ${program} ${text}\n\n${DEFAULTS}\n`;

async function main(argv: string[]): Promise<void> {
  const program = programName(process.argv, process.env, process.cwd());
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage(program));
    return;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command === 'pair') {
    const parsed = parseFlags(rest, PAIR_FLAGS, 'pair', `${program} pair --help`);
    if (parsed.help) return void process.stdout.write(commandUsage(program, PAIR_USAGE));
    const { values } = parsed;
    if (!values.relay || !values.code)
      throw new ConfigError('pair needs --relay URL and --code CODE');
    readHttpUrl('--relay', values.relay);
    const stateDir = values['state-dir'] ?? defaultStateDir(process.env);
    const { identity, channels } = await pair(values.relay, values.code, stateDir, {
      force: values.force === true,
    });
    const dir = stateDirArgs(stateDir, homeStateDir());
    const example = channels[0]?.name ?? 'CHANNEL';
    process.stdout.write(
      `Paired as agent ${identity.name} (${identity.agentId}).\n` +
        `Identity and private key saved in ${stateDir} (key file mode 0600).\n` +
        `Next: run the agent with a route per channel (put your app's URL after the =):\n` +
        `  ${program} run${dir} --route ${shellQuote(example)}=http://127.0.0.1:3000/\n` +
        `or with your routes in a config file (see the README, "Agent"):\n` +
        `  ${program} run${dir} --config agent.yaml\n`,
    );
    return;
  }
  if (command === 'run') {
    const parsed = parseFlags(rest, RUN_FLAGS, 'run', `${program} run --help`);
    if (parsed.help) return void process.stdout.write(commandUsage(program, RUN_USAGE));
    const { values } = parsed;
    const flags = (values.route ?? []).map(parseRouteFlag);
    const file = values.config;
    const load = (): Promise<AgentConfig> =>
      file === undefined ? Promise.resolve(configFromFlags(flags)) : loadAgentConfig(file, flags);
    const config = await load();
    const stateDir = values['state-dir'] ?? defaultStateDir(process.env);
    const identity = await loadIdentity(
      stateDir,
      `${program} pair --relay URL --code CODE${stateDirArgs(stateDir, homeStateDir())}`,
    );
    const logger = createLogger(
      'postern-agent',
      values['log-level'] ?? process.env['POSTERN_LOG_LEVEL'] ?? 'info',
    );
    const agent = createAgent(config, identity, { logger });
    agent.start();
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: finishing deliveries in progress');
      agent.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    // One reload at a time, in signal order: the last SIGHUP's read of the file wins.
    let reloads = Promise.resolve();
    process.on('SIGHUP', () => {
      reloads = reloads.then(() => reload(file, flags, load, agent, logger));
    });
    return;
  }
  unknownCommand(program, command, COMMANDS);
}

/**
 * SIGHUP: reads the config file again and swaps it in; deliveries in flight finish on their
 * old routes. A file that does not parse is refused (the error names file, field and what was
 * expected) and the running config stays.
 */
async function reload(
  file: string | undefined,
  flags: readonly RouteFlag[],
  load: () => Promise<AgentConfig>,
  agent: ReturnType<typeof createAgent>,
  logger: ReturnType<typeof createLogger>,
): Promise<void> {
  if (file === undefined) {
    logger.warn(
      { signal: 'SIGHUP', routes: flags.length },
      'SIGHUP: nothing to reload (no --config file; --route flags change only with a restart)',
    );
    return;
  }
  let next: AgentConfig;
  try {
    next = await load();
  } catch (err) {
    const message = isPosternError(err) ? err.message : String(err);
    logger.error(
      { signal: 'SIGHUP', file },
      `config reload refused, the running config stays: ${message}`,
    );
    return;
  }
  agent.reload(next);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const known =
    isPosternError(err) || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(
    `postern-agent: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
  );
  process.exitCode = 1;
});
