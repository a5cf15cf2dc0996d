/**
 * The agent binary: `pair`, `run`, `--version`. The only agent module that reads argv and the
 * environment.
 */
import { invokedAs, parseFlags, readHttpUrl, shellQuote, unknownCommand } from '../shared/cli.ts';
import { ConfigError, isPosternError } from '../shared/errors.ts';
import { createLogger } from '../shared/logging.ts';
import { VERSION } from '../shared/version.ts';
import { createAgent } from './agent.ts';
import { loadAgentConfig } from './config.ts';
import { defaultStateDir, loadIdentity } from './identity.ts';
import { pair } from './pair.ts';

/** Each command's flags: one line per flag (parseArgs options). */
const PAIR_FLAGS = {
  relay: { type: 'string' },
  code: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;
const RUN_FLAGS = {
  config: { type: 'string' },
  'state-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const;
const COMMANDS = ['pair', 'run', '--version'];

const usage = (program: string) => `Usage: ${program} <command> [options]

  pair --relay URL --code CODE [--state-dir DIR]
        make this agent's key pair and pair it with the relay using a one-time code
  run --config agent.yaml [--state-dir DIR] [--log-level LEVEL]
        connect to the relay and deliver webhooks to the routes in the config
  --version
        print the version

  --state-dir defaults to POSTERN_AGENT_STATE_DIR or ~/.postern-agent
  --log-level defaults to POSTERN_LOG_LEVEL or info
  ${program} <command> --help prints this too
`;

async function main(argv: string[]): Promise<void> {
  const program = invokedAs('agent', process.env, process.argv[1]);
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
    if (parsed.help) return void process.stdout.write(usage(program));
    const { values } = parsed;
    if (!values.relay || !values.code)
      throw new ConfigError('pair needs --relay URL and --code CODE');
    readHttpUrl('--relay', values.relay);
    const stateDir = values['state-dir'] ?? defaultStateDir(process.env);
    const identity = await pair(values.relay, values.code, stateDir);
    process.stdout.write(
      `Paired as agent ${identity.name} (${identity.agentId}).\n` +
        `Identity and private key saved in ${stateDir} (key file mode 0600).\n` +
        `Next: write a config with your routes and run: ${program} run --config agent.yaml --state-dir ${shellQuote(stateDir)}\n`,
    );
    return;
  }
  if (command === 'run') {
    const parsed = parseFlags(rest, RUN_FLAGS, 'run', `${program} run --help`);
    if (parsed.help) return void process.stdout.write(usage(program));
    const { values } = parsed;
    if (!values.config) throw new ConfigError('run needs --config agent.yaml');
    const config = await loadAgentConfig(values.config);
    const identity = await loadIdentity(values['state-dir'] ?? defaultStateDir(process.env));
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
    return;
  }
  unknownCommand(program, command, COMMANDS);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const known =
    isPosternError(err) || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(
    `postern-agent: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
  );
  process.exitCode = 1;
});
