// Property-based fuzzing of the weights parser: valid files mutated (truncations, bit flips,
// header-length edits, header entry edits with huge numbers, wrong dtypes, shapes and offsets,
// raw text edits, appended bytes, non-finite values) must either load or fail with a WeightsError
// whose message is one bounded line: never another exception, never a hang.
//
// Seeded: every run of the suite tries the same files. A failure prints fast-check's seed and
// path; replay it with FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/engine/weights-fuzz.test.ts
// (FUZZ_RUNS=<n> with another FUZZ_SEED fuzzes longer).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { GPT2Config } from '../../src/engine/config.ts';
import { parseConfig } from '../../src/engine/config.ts';
import { MESSAGE_MAX, WeightsError } from '../../src/engine/errors.ts';
import type { TensorToWrite } from '../../src/engine/safetensors.ts';
import { encodeSafetensors, parseHeader } from '../../src/engine/safetensors.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { expectedTensors, loadWeights } from '../../src/engine/weights.ts';
import { memorySource, tinyBytes, tinyConfigText } from '../helpers/model-bytes.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_f11e);
const PATH = process.env.FUZZ_PATH;
const RUNS = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : null;
/** A bounded message: displayText's cut plus its "… (N characters in all)" note. */
const LONGEST = MESSAGE_MAX + 40;
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/** A GPT-2 small enough to load hundreds of times a second: 2 layers, width 8, 64 tokens. */
const SMALL_CONFIG = { model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, vocab_size: 64, eos_token_id: 63 };
function smallModel(): Uint8Array {
  const c = parseConfig(SMALL_CONFIG);
  const tensors: TensorToWrite[] = [];
  let k = 0;
  for (const [name, shape] of expectedTensors(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => Math.sin(++k) * 0.5);
    tensors.push({ name, dtype: k % 3 === 0 ? 'F32' : 'F16', shape, data });
  }
  return encodeSafetensors(tensors);
}

type Header = Record<string, unknown>;

/** The header as an object and the data after it; null once earlier mutations broke the header. */
function splitFile(bytes: Uint8Array): { header: Header; data: Uint8Array } | null {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (8 + n > bytes.length) return null;
  try {
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as unknown;
    const isObject = typeof header === 'object' && header !== null && !Array.isArray(header);
    return isObject ? { header: header as Header, data: bytes.subarray(8 + n) } : null;
  } catch {
    return null;
  }
}

function joinFile(text: string, data: Uint8Array): Uint8Array {
  const hb = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

/** Values a hostile header might hold where a dtype, a shape or an offset belongs. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('F16', 'F32', 'BF16', 'I8', 'U64', 'F8_E4M3', 'F17', '', 'f16', '__proto__', 'constructor'),
  fc.string({ unit: 'binary', maxLength: 24 }),
  fc.constant('F'.repeat(1 << 20)),
  fc.integer(),
  fc.constantFrom(2 ** 53, 2 ** 53 + 2, 1e308, -1, -0, 0.5, 64.5),
  fc.array(fc.oneof(fc.nat({ max: 1 << 20 }), fc.constantFrom(0, 1, 2 ** 31, 2 ** 53, 1e300, -1, 0.5)), { maxLength: 6 }),
  fc.array(fc.nat({ max: 1 << 24 }), { minLength: 2, maxLength: 2 }),
  fc.constantFrom(null, true, {}, [[64]], { 0: 1 }),
);

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; flips: Array<{ at: number; bit: number; header: boolean }> }
  | { kind: 'length'; value: bigint }
  | { kind: 'entry'; tensor: number; field: string; value: unknown }
  | { kind: 'rename'; tensor: number; name: string }
  | { kind: 'remove'; tensor: number }
  | { kind: 'add'; name: string; entry: unknown }
  | { kind: 'text'; at: number; insert: string; cut: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'values'; at: number; bits: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('flip' as const),
    flips: fc.array(fc.record({ at: fc.nat(), bit: fc.nat({ max: 7 }), header: fc.boolean() }), { minLength: 1, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('length' as const), value: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: 4096n })) }),
  fc.record({ kind: fc.constant('entry' as const), tensor: fc.nat(), field: fc.constantFrom('dtype', 'shape', 'data_offsets'), value: hostileValue }),
  fc.record({ kind: fc.constant('rename' as const), tensor: fc.nat(), name: fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('__metadata__', 'h.99999999999999999999.ln_1.bias', 'transformer.wte.weight')) }),
  fc.record({ kind: fc.constant('remove' as const), tensor: fc.nat() }),
  fc.record({
    kind: fc.constant('add' as const),
    name: fc.string({ unit: 'binary', maxLength: 30 }),
    entry: fc.oneof(hostileValue, fc.record({ dtype: hostileValue, shape: hostileValue, data_offsets: hostileValue })),
  }),
  fc.record({
    kind: fc.constant('text' as const),
    at: fc.nat(),
    insert: fc.oneof(fc.constantFrom('\ufeff', '.0', 'e1', '-', ' ', '\n', '"', '{', '}', '[', ']', ',', '\\', '\u0000', '0'.repeat(400)), fc.string({ unit: 'binary', maxLength: 8 })),
    cut: fc.nat({ max: 4 }),
  }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('values' as const), at: fc.nat(), bits: fc.constantFrom(0x7c00, 0xfc00, 0x7e00, 0x7fc00000, 0xff800000, 0x7f800001) }),
);

function tensorName(h: Header, k: number): string {
  const names = Object.keys(h).filter((n) => n !== '__metadata__');
  return names[k % names.length];
}

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const out = bytes.slice();
  const n = Number(new DataView(out.buffer).getBigUint64(0, true));
  switch (m.kind) {
    case 'truncate':
      return out.subarray(0, m.at % out.length);
    case 'flip':
      for (const f of m.flips) {
        const at = f.header ? 8 + (f.at % n) : f.at % out.length;
        out[at] ^= 1 << f.bit;
      }
      return out;
    case 'length':
      new DataView(out.buffer).setBigUint64(0, m.value, true);
      return out;
    case 'values': {
      const room = out.length - 8 - n - 4;
      if (!(room > 0)) return out;
      const at = 8 + n + (m.at % room);
      if (m.bits > 0xffff) new DataView(out.buffer).setUint32(at, m.bits, true);
      else new DataView(out.buffer).setUint16(at, m.bits, true);
      return out;
    }
    case 'append': {
      const longer = new Uint8Array(out.length + m.bytes.length);
      longer.set(out);
      longer.set(m.bytes, out.length);
      return longer;
    }
    case 'text': {
      if (8 + n > out.length) return out;
      const data = out.subarray(8 + n);
      const text = new TextDecoder().decode(out.subarray(8, 8 + n));
      const at = m.at % (text.length + 1);
      return joinFile(text.slice(0, at) + m.insert + text.slice(at + m.cut), data);
    }
    default: {
      const file = splitFile(out);
      if (!file) return out;
      const { header, data } = file;
      const name = tensorName(header, m.kind === 'add' ? 0 : m.tensor);
      if (name === undefined && m.kind !== 'add') return out;
      const entry = header[name];
      if (m.kind === 'entry') {
        if (typeof entry !== 'object' || entry === null) return out;
        (entry as Record<string, unknown>)[m.field] = m.value;
      }
      else if (m.kind === 'rename') {
        header[m.name] = header[name];
        if (m.name !== name) delete header[name];
      } else if (m.kind === 'remove') delete header[name];
      else header[m.name] = m.entry;
      return joinFile(JSON.stringify(header), data);
    }
  }
}

/** Loads `bytes`; returns what happened, failing the property on anything but the two allowed outcomes. */
async function outcome(config: GPT2Config, bytes: Uint8Array): Promise<'loaded' | 'refused'> {
  // The store parses a header before the file's size is known: that path must hold too.
  for (const attempt of [() => parseHeader(bytes, null), () => parseHeader(bytes, bytes.length)]) {
    try {
      attempt();
    } catch (e) {
      checkRefusal(e);
    }
  }
  try {
    const w = await loadWeights(config, memorySource(bytes), planShards(config, 1));
    expect(w.shards).toHaveLength(1);
    return 'loaded';
  } catch (e) {
    checkRefusal(e);
    return 'refused';
  }
}

function checkRefusal(e: unknown): void {
  if (!(e instanceof WeightsError)) throw new Error(`not a WeightsError: ${String(e)}`, { cause: e });
  if (e.message.length > LONGEST) throw new Error(`message of ${e.message.length} characters: ${e.message.slice(0, 200)}…`);
  if (CONTROL.test(e.message)) throw new Error(`message with a control character: ${JSON.stringify(e.message.slice(0, 200))}`);
  if (e.message.length === 0) throw new Error('empty message');
}

function fuzz(config: GPT2Config, valid: Uint8Array, numRuns: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = { loaded: 0, refused: 0 };
  return fc
    .assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (ms) => {
        let bytes = valid;
        for (const m of ms) bytes = bytes.length >= 8 ? mutate(bytes, m) : bytes;
        seen[await outcome(config, bytes)]++;
      }),
      { seed: SEED, path: PATH, numRuns: RUNS ?? numRuns, endOnFailure: PATH === undefined, plugins: [fc.timeout(10_000)] },
    )
    .then(() => seen);
}

describe('fuzzing the weights parser (fast-check, seeded)', () => {
  it('a small GPT-2: every mutated file loads or is refused with one bounded line', async () => {
    const valid = smallModel();
    const config = parseConfig(SMALL_CONFIG);
    expect(await outcome(config, valid)).toBe('loaded');
    const seen = await fuzz(config, valid, 400);
    // The mutations reach both outcomes: some files survive them (a flipped value bit), most do not.
    expect(seen.loaded).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(seen.loaded);
  });

  it('the tiny test model (6.7 MB): the same, with fewer runs', async () => {
    const config = parseConfig(tinyConfigText());
    const seen = await fuzz(config, tinyBytes(), 25);
    expect(seen.refused).toBeGreaterThan(0);
  });
});
