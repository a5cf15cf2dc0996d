/**
 * The commands the agent prints as next steps, written the way this process was started
 * (`npm run agent --` in a checkout, `postern-agent` for the binary, `node dist/…` for a bundle)
 * and with the state dir when it is not the default, so that each works as printed.
 */
import path from 'node:path';
import { invokedAs, shellQuote } from '../shared/cli.ts';

/** How to call this program again from the same shell. */
export function programName(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): string {
  // `npm run agent -- …` runs `tsx agent/main.ts` with the script's name in the environment.
  if (env['npm_lifecycle_event'] === 'agent') return 'npm run agent --';
  const script = argv[1] ?? '';
  const base = path.basename(script);
  // The package command (node_modules/.bin/postern-agent, bin/postern-agent.mjs, a global
  // install) or a bundle: named as the relay's commands name it.
  const launcher = base === 'postern-agent.mjs' && path.basename(path.dirname(script)) === 'bin';
  if (base === 'postern-agent' || launcher) return invokedAs('agent', env, script, 'agent', cwd);
  if (base === 'postern-agent.exe') return 'postern-agent';
  if (/\.(m?js|cjs)$/.test(base)) return `node ${shellQuote(relative(cwd, script))}`;
  if (base.endsWith('.ts')) return `node --import tsx ${shellQuote(relative(cwd, script))}`;
  return 'postern-agent';
}

function relative(cwd: string, file: string): string {
  const rel = path.relative(cwd, file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** `--state-dir DIR`, unless DIR is where the agent looks by default (then nothing). */
export function stateDirArgs(stateDir: string, defaultDir: string): string {
  return path.resolve(stateDir) === path.resolve(defaultDir)
    ? ''
    : ` --state-dir ${shellQuote(stateDir)}`;
}
