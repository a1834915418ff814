import { stderr, stdout } from 'node:process';
import { WeightsError } from '../engine/errors.ts';
import { UsageError } from './args.ts';

/**
 * Runs a command-line tool: a usage error prints one line and exits 2, any other failure one
 * line and exits 1 (a bad model file says so), a closed stdout pipe (`| head`) ends quietly.
 */
export async function cliMain(usage: string, run: (argv: string[]) => Promise<void>): Promise<void> {
  stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  try {
    await run(process.argv.slice(2));
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    if (err instanceof UsageError) {
      stderr.write(err.message === usage ? `${usage}\n` : `error: ${err.message} (--help for usage)\n`);
      process.exit(2);
    }
    stderr.write(`${err instanceof WeightsError ? 'error: bad model: ' : 'error: '}${err.message}\n`);
    process.exit(1);
  }
}
