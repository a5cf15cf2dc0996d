/**
 * The agent binary: `pair`, `run`, `--version`. The only agent module that reads argv and the
 * environment.
 */
import { parseArgs } from 'node:util';
import { ConfigError, isPosternError } from '../shared/errors.ts';
import { createLogger } from '../shared/logging.ts';
import { VERSION } from '../shared/version.ts';
import { createAgent } from './agent.ts';
import { loadAgentConfig } from './config.ts';
import { defaultStateDir, loadIdentity } from './identity.ts';
import { pair } from './pair.ts';

const USAGE = `Usage: postern-agent <command> [options]

  pair --relay URL --code CODE [--state-dir DIR]
        make this agent's key pair and pair it with the relay using a one-time code
  run --config agent.yaml [--state-dir DIR] [--log-level LEVEL]
        connect to the relay and deliver webhooks to the routes in the config
  --version
        print the version

  --state-dir defaults to POSTERN_AGENT_STATE_DIR or ~/.postern-agent
  --log-level defaults to POSTERN_LOG_LEVEL or info
`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command === 'pair') {
    const { values } = parseArgs({
      args: rest,
      options: {
        relay: { type: 'string' },
        code: { type: 'string' },
        'state-dir': { type: 'string' },
      },
      strict: true,
    });
    if (!values.relay || !values.code)
      throw new ConfigError('pair needs --relay URL and --code CODE');
    const stateDir = values['state-dir'] ?? defaultStateDir(process.env);
    const identity = await pair(values.relay, values.code, stateDir);
    process.stdout.write(
      `Paired as agent ${identity.name} (${identity.agentId}).\n` +
        `Identity and private key saved in ${stateDir} (key file mode 0600).\n` +
        `Next: write a config with your routes and run: postern-agent run --config agent.yaml\n`,
    );
    return;
  }
  if (command === 'run') {
    const { values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string' },
        'state-dir': { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
    });
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
  process.stdout.write(USAGE);
  if (command !== undefined && command !== '--help' && command !== '-h' && command !== 'help') {
    process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const known =
    isPosternError(err) || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(
    `postern-agent: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
  );
  process.exitCode = 1;
});
