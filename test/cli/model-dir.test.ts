import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONFIG_BYTES } from '../../src/engine/config.ts';
import { WeightsError } from '../../src/engine/errors.ts';
import { openModelDir } from '../../src/node/model-dir.ts';
import { ROOT, TINY } from '../helpers/fixtures.ts';

// The CLI reads a model directory the user names: only regular files, and a bounded config.json.

let base = '';
let n = 0;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-dir-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** A model directory with the tiny model's files, then `arrange` applied. */
async function modelDir(arrange: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(base, `m${++n}`);
  await mkdir(dir);
  await copyFile(join(TINY, 'config.json'), join(dir, 'config.json'));
  await copyFile(join(TINY, 'model.safetensors'), join(dir, 'model.safetensors'));
  await arrange(dir);
  return dir;
}

const mkfifo = async (path: string): Promise<void> => {
  await rm(path, { force: true });
  const r = spawnSync('mkfifo', [path]);
  if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`);
};

async function refusal(dir: string): Promise<WeightsError> {
  const e = await openModelDir(dir).then(async (m) => {
    await m.close();
    return null;
  }, (err: unknown) => err);
  expect(e).toBeInstanceOf(WeightsError);
  return e as WeightsError;
}

describe('opening a model directory', () => {
  it('opens the tiny model', async () => {
    const m = await openModelDir(await modelDir(async () => undefined));
    expect(m.source.size).toBeGreaterThan(1e6);
    await m.close();
  });

  it.each([
    ['model.safetensors is a named pipe', (d: string) => mkfifo(join(d, 'model.safetensors')), /model\.safetensors: .* is a named pipe, not a regular file/],
    ['config.json is a named pipe', (d: string) => mkfifo(join(d, 'config.json')), /config\.json: .* is a named pipe, not a regular file/],
    ['config.json is /dev/zero (endless)', async (d: string) => {
      await rm(join(d, 'config.json'));
      await symlink('/dev/zero', join(d, 'config.json'));
    }, /config\.json: .* is a device, not a regular file/],
    ['model.safetensors is a directory', async (d: string) => {
      await rm(join(d, 'model.safetensors'));
      await mkdir(join(d, 'model.safetensors'));
    }, /model\.safetensors: .* is a directory/],
    ['config.json is larger than the limit', (d: string) => writeFile(join(d, 'config.json'), `{${' '.repeat(MAX_CONFIG_BYTES)}}`), /larger than 1048576 bytes/],
  ])('refuses at once when %s', async (_, arrange, message) => {
    const e = await refusal(await modelDir(arrange));
    expect(e.message).toMatch(message);
  });

  it('the CLI refuses a named pipe as model.safetensors instead of blocking forever', async () => {
    const dir = await modelDir((d) => mkfifo(join(d, 'model.safetensors')));
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/generate.ts'), '--model', dir, '--prompt', 'hi', '--workers', '0'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000, // only a guard: a blocked CLI is killed and fails the test
    });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^error: bad model: model\.safetensors: .* is a named pipe, not a regular file$/);
  });
});
