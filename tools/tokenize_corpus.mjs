// GPT-2 (r50k_base) tokenization for the Python tooling (there is no Python tokenizer here).
//   node tools/tokenize_corpus.mjs <input.txt> <output.u16>   -> raw little-endian uint16 token ids, prints count
//   node tools/tokenize_corpus.mjs --text "some text"          -> prints the ids as a JSON array
//   node tools/tokenize_corpus.mjs --decode "[1, 2, 3]"        -> prints the decoded text
import { encode, decode } from 'gpt-tokenizer/encoding/r50k_base';
import { readFileSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args[0] === '--text') {
  console.log(JSON.stringify(encode(args[1])));
} else if (args[0] === '--decode') {
  process.stdout.write(decode(JSON.parse(args[1])));
} else if (args.length === 2) {
  const ids = encode(readFileSync(args[0], 'utf8'));
  const u16 = new Uint16Array(ids);
  if (ids.some((t, i) => u16[i] !== t)) throw new Error('token id does not fit in uint16');
  // Uint16Array is platform-endian; write explicitly little-endian.
  const buf = Buffer.alloc(u16.length * 2);
  u16.forEach((t, i) => buf.writeUInt16LE(t, i * 2));
  writeFileSync(args[1], buf);
  console.log(ids.length);
} else {
  console.error('usage: node tools/tokenize_corpus.mjs <input.txt> <output.u16> | --text "..." | --decode "[ids]"');
  process.exit(2);
}
