// A tiny argv parser for the CLI and the benchmark: `--name value`, `--flag`, `--name=value`.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type Args = Map<string, string | true>;

export function parseArgs(argv: string[], flags: Set<string>, options: Set<string>): Args {
  const out: Args = new Map();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (flags.has(name)) {
      if (eq > 0) throw new UsageError(`--${name} takes no value`);
      out.set(name, true);
    } else if (options.has(name)) {
      const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
      out.set(name, value);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return out;
}

export function numberArg(args: Args, name: string, fallback: number, check: (v: number) => boolean, what: string): number {
  const raw = args.get(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw === true || raw.trim() === '' || !Number.isFinite(v) || !check(v)) {
    throw new UsageError(`--${name} must be ${what}, got ${JSON.stringify(raw === true ? '' : raw)}`);
  }
  return v;
}
