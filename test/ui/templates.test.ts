import { describe, expect, it } from 'vitest';
import { defaultSettings } from '../../src/app/settings.ts';
import type { Turn } from '../../src/app/templates.ts';
import { cleanReply, renderPrompt, replyIds } from '../../src/app/templates.ts';
import { decode, encode, END_OF_TEXT } from '../../src/engine/tokenizer.ts';

const turns = (...texts: string[]): Turn[] => texts.map((text, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', text }));

describe('DialoGPT template', () => {
  const settings = { ...defaultSettings('dialogpt'), maxNewTokens: 32 };

  it('joins turns with <|endoftext|>: encode(turn) + [50256] per turn, reply ends at 50256', () => {
    const p = renderPrompt({ turns: turns('Hello there', 'Hi!', 'How are you?'), settings, window: 1024 });
    expect(p.ids).toEqual([...encode('Hello there'), 50256, ...encode('Hi!'), 50256, ...encode('How are you?'), 50256]);
    expect(p.eosTokenId).toBe(END_OF_TEXT);
    expect(p.stopSequences).toEqual([]);
  });

  it('has no persona line', () => {
    const p = renderPrompt({ turns: turns('Hi'), settings: { ...settings, persona: 'You are a pirate.' }, window: 1024 });
    expect(p.ids).toEqual([...encode('Hi'), 50256]);
  });
});

describe('transcript template (base GPT-2)', () => {
  const settings = { ...defaultSettings('transcript'), persona: '', maxNewTokens: 50 };

  it('renders User: / Assistant: lines, cues the assistant and stops at the next user line', () => {
    const p = renderPrompt({ turns: turns('Hi', 'Hello! How can I help?', 'Tell me a joke'), settings, window: 1024 });
    expect(decode(p.ids)).toBe('User: Hi\nAssistant: Hello! How can I help?\nUser: Tell me a joke\nAssistant:');
    expect(p.stopSequences).toEqual(['\nUser:']);
    expect(p.eosTokenId).toBe(END_OF_TEXT);
  });

  it('puts the persona line at the top', () => {
    const p = renderPrompt({ turns: turns('Hi'), settings: { ...settings, persona: 'A chat with a pirate.' }, window: 1024 });
    expect(decode(p.ids)).toBe('A chat with a pirate.\nUser: Hi\nAssistant:');
  });
});

describe('play-script template (bundled Shakespeare model)', () => {
  const settings = { ...defaultSettings('play-script'), userName: 'romeo', botName: 'Juliet', maxNewTokens: 40 };

  it('writes speaker names in capitals on their own line, blank lines between speeches', () => {
    const p = renderPrompt({ turns: turns('What light through yonder window breaks?', 'It is the east.', 'Arise, fair sun!'), settings, window: 256 });
    expect(decode(p.ids)).toBe(
      'ROMEO:\nWhat light through yonder window breaks?\n\nJULIET:\nIt is the east.\n\nROMEO:\nArise, fair sun!\n\nJULIET:\n',
    );
    expect(p.stopSequences).toContain('\n\n');
  });

  it('tokenizes like the training corpus (the "\\n\\n" before a name is two 198 tokens)', () => {
    const p = renderPrompt({ turns: turns('Good morrow.', 'Good morrow.', 'Farewell.'), settings, window: 256 });
    expect(p.ids).toEqual(encode(decode(p.ids)));
  });

  it('keeps a user turn on one speech: blank lines inside it are collapsed', () => {
    const p = renderPrompt({ turns: turns('One\n\n\nTwo'), settings, window: 256 });
    expect(decode(p.ids)).toBe('ROMEO:\nOne\nTwo\n\nJULIET:\n');
  });

  it('puts a scene line (the persona) at the top', () => {
    const p = renderPrompt({ turns: turns('Hi'), settings: { ...settings, persona: 'SCENE II. Capulet’s orchard.' }, window: 256 });
    expect(decode(p.ids)).toBe('SCENE II. Capulet’s orchard.\n\nROMEO:\nHi\n\nJULIET:\n');
  });
});

describe('completion mode', () => {
  it('is the raw text, no template, no stop sequence', () => {
    const settings = { ...defaultSettings('transcript'), mode: 'completion' as const };
    const p = renderPrompt({ turns: turns('Once upon a time', ' there was'), settings, window: 1024 });
    expect(decode(p.ids)).toBe('Once upon a time there was');
    expect(p.stopSequences).toEqual([]);
    expect(cleanReply(' and so on  ', 'completion')).toBe(' and so on  ');
    expect(cleanReply('\n and so on  ', 'chat')).toBe('and so on');
  });
});

describe('prefix stability (KV cache reuse)', () => {
  for (const template of ['play-script', 'transcript', 'dialogpt'] as const) {
    it(`${template}: the next turn's prompt starts with this turn's prompt plus the reply`, () => {
      const settings = { ...defaultSettings(template), persona: template === 'dialogpt' ? '' : 'A persona line.', maxNewTokens: 40 };
      const history = turns('How now, what news?', 'The king is dead.', 'Then who shall rule?');
      const before = renderPrompt({ turns: history, settings, window: 1024 });
      const reply = 'His son, my lord.';
      // The model's own reply tokens, as it would generate them after the cue.
      const replyIds = encode(template === 'transcript' ? ` ${reply}` : reply);
      const after = renderPrompt({ turns: [...history, { role: 'assistant', text: reply }, { role: 'user', text: 'Long live the king!' }], settings, window: 1024 });
      const cached = [...before.ids, ...replyIds];
      expect(after.ids.slice(0, cached.length)).toEqual(cached);
    });
  }
});

describe('reply ids', () => {
  it('renders a reply by its generated ids, leading space and odd splits included', () => {
    const settings = { ...defaultSettings('play-script'), maxNewTokens: 40 };
    const first = renderPrompt({ turns: turns('Hail!'), settings, window: 256 });
    // The model wrote " Good" with a leading space and spelled "morrow" in two pieces.
    const generated = [...encode(' Good'), ...encode(' mor'), ...encode('row')];
    const ids = replyIds(generated, decode(generated), END_OF_TEXT, decode);
    expect(ids).toEqual(generated);
    const next = renderPrompt({ turns: [...turns('Hail!'), { role: 'assistant', text: 'Good morrow', ids }, { role: 'user', text: 'And you.' }], settings, window: 256 });
    expect(next.ids.slice(0, first.ids.length + ids.length)).toEqual([...first.ids, ...ids]);
    expect(decode(next.ids)).toBe('ROMEO:\nHail!\n\nJULIET:\n Good morrow\n\nROMEO:\nAnd you.\n\nJULIET:\n');
  });

  it('drops the end-of-text token and the stop sequence, re-encoding a token the stop cut in half', () => {
    const gen = [...encode('Farewell'), ...encode('.\n\n'), END_OF_TEXT];
    expect(replyIds(gen, 'Farewell.', END_OF_TEXT, decode)).toEqual([...encode('Farewell'), ...encode('.')]);
    const done = [...encode('Adieu'), END_OF_TEXT];
    expect(replyIds(done, 'Adieu', END_OF_TEXT, decode)).toEqual(encode('Adieu'));
  });

  it('DialoGPT: a reply is its ids then <|endoftext|>', () => {
    const settings = { ...defaultSettings('dialogpt'), maxNewTokens: 20 };
    const p = renderPrompt({ turns: [{ role: 'user', text: 'Hi' }, { role: 'assistant', text: 'Hello', ids: [15496] }, { role: 'user', text: 'Bye' }], settings, window: 1024 });
    expect(p.ids).toEqual([...encode('Hi'), 50256, 15496, 50256, ...encode('Bye'), 50256]);
  });
});

describe('context window', () => {
  const settings = { ...defaultSettings('play-script'), maxNewTokens: 32 };
  const long = (i: number): string => `Speech number ${i}: ${'and more words '.repeat(6)}`.trim();
  const history = turns(...Array.from({ length: 21 }, (_, i) => long(i)));

  it('drops the oldest turns when the conversation outgrows the window minus the reply budget', () => {
    const p = renderPrompt({ turns: history, settings, window: 256 });
    expect(p.replyBudget).toBe(32);
    expect(p.ids.length).toBeLessThanOrEqual(256 - 32);
    expect(p.firstTurn).toBeGreaterThan(0);
    expect(p.truncatedTokens).toBe(0);
    const text = decode(p.ids);
    expect(text).toContain(long(20));
    expect(text).not.toContain(long(0));
    // The kept turns start cleanly with a speaker line.
    expect(text.startsWith('JULIET:\n') || text.startsWith('ROMEO:\n')).toBe(true);
  });

  it('never brings a dropped turn back and keeps the prefix for the following turns', () => {
    const p1 = renderPrompt({ turns: history, settings, window: 256 });
    const more = [...history, { role: 'assistant' as const, text: 'Short.' }, { role: 'user' as const, text: 'Shorter.' }];
    const p2 = renderPrompt({ turns: more, settings, window: 256, firstTurn: p1.firstTurn });
    expect(p2.firstTurn).toBe(p1.firstTurn);
    expect(p2.ids.slice(0, p1.ids.length)).toEqual(p1.ids);
  });

  it('cuts the start of a single turn that alone is too long, keeping the cue', () => {
    const p = renderPrompt({ turns: turns('word '.repeat(400)), settings, window: 256 });
    expect(p.ids.length).toBe(256 - 32);
    expect(p.truncatedTokens).toBeGreaterThan(0);
    expect(decode(p.ids).endsWith('\n\nJULIET:\n')).toBe(true);
  });

  it('keeps the reply budget below the window', () => {
    const p = renderPrompt({ turns: turns('Hi'), settings: { ...settings, maxNewTokens: 4096 }, window: 128 });
    expect(p.replyBudget).toBe(96);
  });
});
