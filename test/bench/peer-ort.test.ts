// The benchmark's peer must never fail the bench: every way it cannot run comes back as a reason.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchPeer, measureInChild, peerText, prepareOnnx, PeerSkip } from '../../bench/peer-ort.ts';

const tiny = new URL('../models/tiny', import.meta.url).pathname;
const prompt = (): number[] => [31373, 616, 1438, 318, 198];

describe('bench peer (onnxruntime-web)', () => {
  it('skips with the reason when the model directory has no weights', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-test-'));
    writeFileSync(join(dir, 'config.json'), '{}');
    const report = await benchPeer({ dir, prompt, decodeTokens: 1, runs: 1 });
    expect(report).toEqual({ skipped: `${join(dir, 'model.safetensors')} not found` });
    expect(peerText(report, 'm', [])).toBe(`peer skipped: ${join(dir, 'model.safetensors')} not found\n`);
  });

  it('skips when python is missing, and when it cannot import torch and onnx', async () => {
    await expect(prepareOnnx(tiny, undefined, '/nonexistent/python3')).rejects.toThrow(new PeerSkip(
      "/nonexistent/python3 not found (the ONNX export needs Debian's python3 with torch and onnx)"));
    // `false` exits 1 whatever it is asked: a python that lacks the modules, as far as the bench can tell.
    await expect(prepareOnnx(tiny, undefined, '/bin/false')).rejects.toThrow(/^\/bin\/false cannot import torch, onnx and numpy/);
    const report = await benchPeer({ dir: tiny, prompt, decodeTokens: 1, runs: 1, python: '/nonexistent/python3' });
    expect('skipped' in report && report.skipped).toMatch(/^\/nonexistent\/python3 not found/);
  });

  it('reports an absent ONNX file from the measuring child process, naming it', async () => {
    const onnx = join(tmpdir(), 'peer-test-absent', 'model.onnx');
    await expect(measureInChild({ onnx, threads: 1, ids: prompt(), decodeTokens: 1, runs: 1, warmups: 0, checkId: 0 }))
      .rejects.toThrow(onnx);
  });
});
