/**
 * What both binaries' command lines share: flag parsing whose errors are one line naming the
 * flag and the nearest valid one, the same for commands, and the name a user started the
 * program by (so that printed next steps work as printed).
 */
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from './errors.ts';

/** A flag table: parseArgs options, so that a helper adding a flag adds one line. */
export type Flags = NonNullable<ParseArgsConfig['options']>;

/** Edit distance (Levenshtein), for "did you mean". Inputs are short words. */
export function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** The candidate nearest to `word`: a prefix match first, then the smallest edit distance. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const prefixed = candidates.find((c) => c.startsWith(word) || word.startsWith(c));
  if (prefixed !== undefined && word.length > 0) return prefixed;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** One line for an unknown command, naming the nearest valid one. */
export function unknownCommand(program: string, given: string, valid: readonly string[]): never {
  const near = nearest(given, valid);
  throw new ConfigError(
    `unknown command "${given}"${near === undefined ? '' : `; did you mean "${near}"?`} (${program} --help lists them)`,
  );
}

/**
 * parseArgs with `--help`/`-h` always known, and its errors rewritten as one line: an unknown
 * flag names the nearest flag `what` takes when one is near (else one of another command, as
 * such), a missing value names the flag.
 */
export function parseFlags<F extends Flags>(
  args: string[],
  flags: F,
  what: string,
  help: string,
  /** Flags other commands of the program take: named as such rather than "unknown". */
  elsewhere: readonly string[] = [],
): {
  values: ReturnType<typeof parseArgs<{ options: F; allowPositionals: true }>>['values'];
  positionals: string[];
  help: boolean;
} {
  if (args.includes('--help') || args.includes('-h')) {
    return { values: {} as never, positionals: [], help: true };
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options: flags,
      allowPositionals: true,
      strict: true,
    });
    return { values, positionals, help: false };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = (err as Error).message;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(message)?.[1] ?? '?';
      const name = flag.replace(/^-+/, '').split('=')[0]!;
      if (elsewhere.includes(name)) {
        throw new ConfigError(`${what}: --${name} is not a flag of this command (${help})`);
      }
      // A suggestion only when it is near: a far-off one misleads more than none.
      const near = (candidates: readonly string[]) => {
        const c = nearest(name, candidates);
        return c !== undefined && distance(name, c) <= Math.max(2, Math.floor(name.length / 3))
          ? c
          : undefined;
      };
      const own = near(Object.keys(flags));
      const other = own === undefined ? near(elsewhere) : undefined;
      const hint =
        own !== undefined
          ? `; did you mean --${own}?`
          : other !== undefined
            ? `; --${other} is not a flag of this command`
            : '';
      throw new ConfigError(`${what}: unknown flag ${flag}${hint} (${help})`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = /'(--?[\w-]+)/.exec(message)?.[1] ?? 'a flag';
      const type = flags[flag.replace(/^-+/, '')]?.type;
      throw new ConfigError(
        type === 'boolean'
          ? `${what}: ${flag} takes no value (${help})`
          : `${what}: ${flag} needs a value (${help})`,
      );
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new ConfigError(`${what}: unexpected argument (${help})`);
    }
    throw err;
  }
}

/**
 * An http(s) URL given on the command line, or one line saying what was expected: the usual
 * slip is a host and port without a scheme (`localhost:8080`, which `new URL` reads as a
 * scheme "localhost:").
 */
export function readHttpUrl(flag: string, raw: string): string {
  const example = /^[\w.-]+(:\d+)?(\/.*)?$/.test(raw) ? ` (did you mean http://${raw}?)` : '';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(
      `${flag}: expected an http(s) URL such as http://localhost:8080, got "${raw}"${example}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(
      `${flag}: expected an http(s) URL such as http://localhost:8080, got "${raw}"${example}`,
    );
  }
  return raw;
}

/** How each binary can be started; the agent's command follows from the relay's. */
export type Program = 'relay' | 'agent';

/**
 * The command a user started `which` by, for printed next steps: `npm run relay --` under
 * `npm run` (or the sources run through tsx), `npx postern-relay` under npx, the bare name when
 * run from a directory on PATH, `node dist/postern-relay.mjs` for a bundle run by path, else
 * the path as run (`./bin/postern-relay.mjs`, `./postern-agent`). `as` gives the same way of
 * starting the other program.
 */
export function invokedAs(
  which: Program,
  env: NodeJS.ProcessEnv,
  argv1: string | undefined,
  as: Program = which,
  cwd = process.cwd(),
): string {
  const event = env['npm_lifecycle_event'];
  if (event === 'relay' || event === 'agent' || event === 'start') return `npm run ${as} --`;
  if (event === 'npx') return `npx postern-${as}`;
  const script = argv1 ?? '';
  if (/[\\/](server|agent)[\\/]main\.ts$/.test(script)) return `npm run ${as} --`;
  const file = /^postern-(relay|agent)(\.mjs)?$/.exec(path.basename(script));
  if (!file) return `postern-${as}`;
  const dir = path.dirname(script);
  const onPath = (env['PATH'] ?? '')
    .split(path.delimiter)
    .some((d) => d && path.resolve(d) === dir);
  if (onPath) return `postern-${as}`;
  const rel = path.relative(cwd, path.join(dir, `postern-${as}${file[2] ?? ''}`));
  const shown =
    rel.startsWith('..') || path.isAbsolute(rel)
      ? path.join(dir, `postern-${as}${file[2] ?? ''}`)
      : `./${rel}`;
  return path.basename(dir) === 'dist' ? `node ${shellQuote(shown)}` : shellQuote(shown);
}

/** A value quoted for a POSIX shell when it needs it. */
export function shellQuote(value: string): string {
  // A leading ~ would be expanded by the shell: quoted too.
  if (/^[\w@%+=:,./~-]+$/.test(value) && !value.startsWith('~')) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
