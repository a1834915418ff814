import { encode as unbounded, decode } from 'gpt-tokenizer/encoding/r50k_base';
import { bpeInputs, encode, MAX_PIECE } from '../src/engine/tokenizer.ts';
const whole = (t: string) => unbounded(t, { disallowedSpecial: new Set() });
const t = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nI'm sure you'll say it's fine, we've done it, they're here, he'd go.\n" +
    'Numbers 3.14159, 1,000,000 and 2024-06-01; emoji 😀👍🏽🎉, 日本語のテキスト, Ελληνικά, العربية, עברית, हिन्दी.\n' +
    `\t\tTabs,   runs  of   spaces,\r\nCRLF, ${'x'.repeat(MAX_PIECE - 1)} and ${'-'.repeat(80)} and <|endoftext|>.\n`;
const a = encode(t), b = whole(t);
const i = a.findIndex((x, k) => x !== b[k]);
console.log(i, JSON.stringify(decode(b.slice(i - 3, i + 3))), a.slice(i - 2, i + 3), b.slice(i - 2, i + 3), [...bpeInputs(t)].map(s => s.length));
console.log([...t.matchAll(/'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu)].map(m => m[0]).filter(p => p.length > 50).map(p=>p.length));
