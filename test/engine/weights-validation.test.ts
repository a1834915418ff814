import { describe, expect, it } from 'vitest';
import type { GPT2Config } from '../../src/engine/config.ts';
import { parseConfig } from '../../src/engine/config.ts';
import { WeightsError } from '../../src/engine/errors.ts';
import type { WeightsErrorCode } from '../../src/engine/errors.ts';
import { createReferenceDecoder } from '../../src/engine/reference.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { loadWeights } from '../../src/engine/weights.ts';
import { relativeError } from '../helpers/fixtures.ts';
import { encodeSafetensors, memorySource, tinyBytes, tinyConfigText, tinyTensors, withHeader } from '../helpers/model-bytes.ts';

const config: GPT2Config = parseConfig(tinyConfigText());
const load = (bytes: Uint8Array, c: GPT2Config = config) => loadWeights(c, memorySource(bytes), planShards(c, 1));

async function rejects(bytes: Uint8Array, code: WeightsErrorCode, subject: string | RegExp, c: GPT2Config = config): Promise<WeightsError> {
  const err = await load(bytes, c).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WeightsError);
  const we = err as WeightsError;
  expect(we.code).toBe(code);
  if (typeof subject === 'string') expect(we.subject).toBe(subject);
  else expect(we.subject).toMatch(subject);
  expect(we.message.length).toBeGreaterThan(10);
  return we;
}

async function logitsOf(bytes: Uint8Array): Promise<Float32Array> {
  const d = createReferenceDecoder(await load(bytes));
  return (await d.step([31373, 616, 1438, 318, 198])).slice();
}

describe('safetensors validation: every bad file is a typed error naming the culprit', () => {
  it('a file too small to hold the header length', async () => {
    await rejects(new Uint8Array(5), 'file-too-small', '');
  });

  it('a header length beyond the file', async () => {
    const b = tinyBytes().slice(0, 4096);
    new DataView(b.buffer).setBigUint64(0, 5000n, true);
    await rejects(b, 'header-too-large', '');
  });

  it('an absurd header length (2^62)', async () => {
    const b = tinyBytes();
    new DataView(b.buffer).setBigUint64(0, 1n << 62n, true);
    await rejects(b, 'header-too-large', '');
  });

  it('a header that is not JSON', async () => {
    const b = tinyBytes();
    b[8] = 0x7b; b[9] = 0x7b; // "{{"
    await rejects(b, 'header-json', '');
  });

  it('a header that is JSON but not an object', async () => {
    await rejects(withHeaderText('[1, 2, 3]'), 'header-json', '');
  });

  it('an entry without data_offsets', async () => {
    await rejects(withHeader((h) => { delete (h['wpe.weight'] as Partial<typeof h[string]>).data_offsets; }), 'header-entry', 'wpe.weight');
  });

  it('offsets pointing past the end of the file', async () => {
    await rejects(withHeader((h) => {
      const [b, e] = h['ln_f.bias'].data_offsets;
      h['ln_f.bias'].data_offsets = [b + 1e9, e + 1e9];
    }), 'offsets', 'ln_f.bias');
  });

  it('offsets that end before they begin', async () => {
    await rejects(withHeader((h) => {
      const [b, e] = h['ln_f.bias'].data_offsets;
      h['ln_f.bias'].data_offsets = [e, b];
    }), 'offsets', 'ln_f.bias');
  });

  it('overlapping tensors', async () => {
    await rejects(withHeader((h) => { h['h.0.ln_1.bias'].data_offsets = [...h['h.0.ln_1.weight'].data_offsets]; }), 'offsets', /h\.0\.ln_1\.(bias|weight)/);
  });

  it('a dtype whose size disagrees with the shape and offsets', async () => {
    await rejects(withHeader((h) => { h['wpe.weight'].dtype = 'F32'; }), 'dtype', 'wpe.weight');
  });

  it('an unknown dtype', async () => {
    await rejects(withHeader((h) => { h['wpe.weight'].dtype = 'F17'; }), 'dtype', 'wpe.weight');
  });

  it('an integer dtype for a weight', async () => {
    await rejects(withHeader((h) => { h['h.1.mlp.c_fc.bias'].dtype = 'I16'; }), 'dtype', 'h.1.mlp.c_fc.bias');
  });

  it('a shape that disagrees with config.json', async () => {
    await rejects(withHeader((h) => { h['h.0.attn.c_attn.weight'].shape = [192, 64]; }), 'shape', 'h.0.attn.c_attn.weight');
  });

  it('a config whose n_embd disagrees with the file', async () => {
    const wide = parseConfig({ ...JSON.parse(tinyConfigText()), n_embd: 128 });
    const e = await rejects(tinyBytes(), 'shape', /weight|bias/, wide);
    expect(e.message).toMatch(/disagrees with config\.json/);
  });

  it('a layer the config does not have', async () => {
    const deeper = parseConfig({ ...JSON.parse(tinyConfigText()), n_layer: 1 });
    await rejects(tinyBytes(), 'shape', /^h\.1\./, deeper);
  });

  it('a missing tensor', async () => {
    await rejects(withHeader((h) => { h['ln_f.gamma'] = h['ln_f.bias']; delete (h as Record<string, unknown>)['ln_f.bias']; }), 'missing-tensor', 'ln_f.bias');
  });

  it('a truncated file', async () => {
    const b = tinyBytes();
    await rejects(b.slice(0, b.length - 1000), 'truncated', /./);
  });

  it('a file that ends right after the header', async () => {
    const b = tinyBytes();
    const n = Number(new DataView(b.buffer).getBigUint64(0, true));
    await rejects(b.slice(0, 8 + n), 'truncated', /./);
  });

  it('a source that returns fewer bytes than asked (a failed read)', async () => {
    const b = tinyBytes();
    const src = memorySource(b);
    const flaky = { size: b.length, read: async (s: number, e: number) => (s > 100_000 ? (await src.read(s, e)).slice(0, 10) : src.read(s, e)) };
    const err = await loadWeights(config, flaky, planShards(config, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as WeightsError).code).toBe('truncated');
  });

  it('NaN weights', async () => {
    const tensors = tinyTensors();
    tensors.find((t) => t.name === 'h.1.mlp.c_proj.weight')!.data[77] = NaN;
    await rejects(encodeSafetensors(tensors), 'values', 'h.1.mlp.c_proj.weight');
  });
});

describe('the header parser is as strict as the safetensors format', () => {
  /** The tiny model with its header text rewritten (then re-padded with spaces). */
  function withHeaderEdit(edit: (json: string) => string, dataEdit: (data: Uint8Array) => Uint8Array = (d) => d): Uint8Array {
    const b = tinyBytes();
    const n = Number(new DataView(b.buffer).getBigUint64(0, true));
    const json = edit(new TextDecoder().decode(b.subarray(8, 8 + n)).trimEnd());
    const hb = new TextEncoder().encode(json);
    const data = dataEdit(b.subarray(8 + n));
    const out = new Uint8Array(8 + hb.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
    out.set(hb, 8);
    out.set(data, 8 + hb.length);
    return out;
  }

  it('the unedited file still loads, with trailing space padding', async () => {
    const padded = withHeaderEdit((j) => j + '      ');
    expect((await load(padded)).common.length).toBeGreaterThan(0);
  });

  it('a UTF-8 byte-order mark before the header', async () => {
    const e = await rejects(withHeaderEdit((j) => '\ufeff' + j), 'header-json', '');
    expect(e.message).toMatch(/byte-order mark/);
  });

  it('padding other than spaces after the header', async () => {
    await rejects(withHeaderEdit((j) => j + '\n  '), 'header-json', '');
    await rejects(withHeaderEdit((j) => j + '\u0000'), 'header-json', '');
  });

  it.each([
    ['64.0', '64.0'],
    ['6.4e1', '6.4e1'],
    ['-0', '-0'],
  ])('a shape written as %s', async (_, literal) => {
    const e = await rejects(withHeaderEdit((j) => j.replace('"ln_f.bias":{"dtype":"F16","shape":[64]', `"ln_f.bias":{"dtype":"F16","shape":[${literal}]`)), 'header-entry', 'ln_f.bias');
    expect(e.message).toContain(`shape holds ${literal}`);
  });

  it('an offset written as a float', async () => {
    const e = await rejects(withHeaderEdit((j) => j.replace(/"data_offsets":\[0,32768\]/, '"data_offsets":[0.0,32768]')), 'header-entry', 'h.0.attn.bias');
    expect(e.message).toMatch(/data_offsets holds 0\.0/);
  });

  it('trailing bytes after the data section', async () => {
    const e = await rejects(withHeaderEdit((j) => j, (d) => new Uint8Array([...d, 0x3c, 0x68, 0x74, 0x6d, 0x6c])), 'trailing-data', '');
    expect(e.message).toMatch(/5 bytes follow the last tensor/);
  });

  it('a gap between two tensors', async () => {
    // Shift every tensor after the first by 16 bytes of padding.
    const bytes = withHeader((h) => {
      for (const [name, t] of Object.entries(h)) if (name !== '__metadata__' && t.data_offsets[0] > 0) t.data_offsets = [t.data_offsets[0] + 16, t.data_offsets[1] + 16];
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const first = 8 + n + 32768;
    const padded = new Uint8Array(bytes.length + 16);
    padded.set(bytes.subarray(0, first));
    padded.set(bytes.subarray(first), first + 16);
    const e = await rejects(padded, 'offsets', /./);
    expect(e.message).toMatch(/gap of 16 bytes/);
  });

  it('a tensor name that appears twice', async () => {
    const e = await rejects(withHeaderEdit((j) => j.replace('{"__metadata__"', '{"ln_f.bias":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},"__metadata__"')), 'header-entry', 'ln_f.bias');
    expect(e.message).toMatch(/appears twice/);
  });

  it('a field that appears twice in one entry (JSON.parse would keep the last)', async () => {
    const e = await rejects(withHeaderEdit((j) => j.replace('"ln_f.bias":{"dtype":"F16"', '"ln_f.bias":{"dtype":"I8","dtype":"F16"')), 'header-entry', 'ln_f.bias');
    expect(e.message).toMatch(/field "dtype" twice/);
  });

  it('the same name written with an escape counts as a duplicate', async () => {
    await rejects(withHeaderEdit((j) => j.replace('{"__metadata__"', '{"ln_f.bia\\u0073":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},"__metadata__"')), 'header-entry', 'ln_f.bias');
  });

  it('metadata that is not a map of strings', async () => {
    await rejects(withHeaderEdit((j) => j.replace('"__metadata__":{"format":"pt"}', '"__metadata__":{"format":1}')), 'header-entry', '__metadata__');
    await rejects(withHeaderEdit((j) => j.replace('"__metadata__":{"format":"pt"}', '"__metadata__":["pt"]')), 'header-entry', '__metadata__');
  });

  it('a shape whose byte size overflows', async () => {
    const e = await rejects(withHeader((h) => { h['ln_f.bias'].shape = [2 ** 30, 2 ** 30, 2 ** 30, 0]; }), 'header-entry', 'ln_f.bias');
    expect(e.message).toMatch(/overflows/);
  });

  it('empty and 0-rank tensors are allowed, as the format says', async () => {
    const tensors = tinyTensors();
    tensors.push({ name: 'extra.empty', dtype: 'F32', shape: [3, 0], data: new Float32Array(0) });
    tensors.push({ name: 'extra.scalar', dtype: 'F32', shape: [], data: new Float32Array([1.5]) });
    expect((await load(encodeSafetensors(tensors))).common.length).toBeGreaterThan(0);
  });
});

describe('config.json validation', () => {
  const base = JSON.parse(tinyConfigText()) as Record<string, unknown>;
  const bad = (patch: Record<string, unknown>, field: string) => {
    let err: unknown = null;
    try {
      parseConfig({ ...base, ...patch });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as WeightsError).code).toBe('config');
    expect((err as WeightsError).subject).toBe(field);
  };
  it('rejects malformed JSON', () => {
    expect(() => parseConfig('{"n_layer": 2,')).toThrow(WeightsError);
  });
  it('rejects missing or out-of-range fields', () => {
    bad({ n_layer: undefined }, 'n_layer');
    bad({ n_head: 0 }, 'n_head');
    bad({ n_embd: 'sixty-four' }, 'n_embd');
    bad({ n_head: 3 }, 'n_head');
    bad({ vocab_size: -5 }, 'vocab_size');
    bad({ layer_norm_epsilon: 0 }, 'layer_norm_epsilon');
    bad({ model_type: 'bert' }, 'model_type');
    bad({ activation_function: 'relu' }, 'activation_function');
    bad({ eos_token_id: 60000 }, 'eos_token_id');
  });
  it('accepts n_ctx when n_positions is absent, and ignores unknown fields', () => {
    const c = parseConfig({ ...base, n_positions: undefined, n_ctx: 64, some_future_field: true });
    expect(c.nPositions).toBe(64);
  });
});

describe('Hugging Face checkpoint variants load to the same model', async () => {
  const want = await logitsOf(tinyBytes());

  it('keys with the transformer. prefix, a tied lm_head and the attention buffers', async () => {
    const tensors = tinyTensors().map((t) => ({ ...t, name: `transformer.${t.name}` }));
    const wte = tensors.find((t) => t.name === 'transformer.wte.weight')!;
    tensors.push({ ...wte, name: 'lm_head.weight' });
    tensors.push({ name: 'transformer.h.0.attn.masked_bias', dtype: 'F32', shape: [], data: new Float32Array([-1e4]) });
    expect(relativeError(await logitsOf(encodeSafetensors(tensors)), want)).toBe(0);
  });

  it('F32 weights give the same logits as the F16 file they were decoded from', async () => {
    const tensors = tinyTensors().map((t) => ({ ...t, dtype: 'F32' as const }));
    expect(relativeError(await logitsOf(encodeSafetensors(tensors)), want)).toBe(0);
  });

  it('BF16 weights load and stay close', async () => {
    const tensors = tinyTensors().map((t) => ({ ...t, dtype: 'BF16' as const }));
    const err = relativeError(await logitsOf(encodeSafetensors(tensors)), want);
    expect(err).toBeGreaterThan(0); // bfloat16 really did round
    expect(err).toBeLessThan(0.05);
  });
});

function withHeaderText(json: string): Uint8Array {
  let text = json;
  while ((8 + text.length) % 8) text += ' ';
  const hb = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + hb.length + 16);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  return out;
}
