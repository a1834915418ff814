import { describe, expect, it } from 'vitest';
import { ALLOWED_TAGS, escapeHtml, MAX_NESTING, renderMarkdown } from '../../src/app/markdown.ts';

/** Every tag in the output, with its attributes: nothing outside the allowlist may appear. */
function tags(html: string): Array<{ name: string; attrs: string; close: boolean }> {
  return [...html.matchAll(/<(\/?)([a-zA-Z0-9]+)([^>]*)>/g)].map((m) => ({ name: m[2].toLowerCase(), attrs: m[3], close: m[1] === '/' }));
}

/** What is wrong with one tag of the output, or null. */
function problem(t: { name: string; attrs: string; close: boolean }): string | null {
  if (!ALLOWED_TAGS.has(t.name)) return `tag <${t.name}>`;
  // Attributes are only ever name="value" with no raw quote or bracket in the value.
  if (!/^(\s+[a-z-]+="[^"<>]*")*$/.test(t.attrs)) return `attributes of <${t.name}>: ${t.attrs}`;
  for (const [, a] of t.attrs.matchAll(/\s([a-z-]+)="/g)) {
    if (!['href', 'target', 'rel', 'class', 'start'].includes(a)) return `attribute ${a} on <${t.name}>`;
  }
  const href = /href="([^"]*)"/.exec(t.attrs);
  if (href && !/^https?:\/\//i.test(href[1])) return `href ${href[1]}`;
  if (t.name === 'a' && !t.close && !href) return 'a link without href';
  const start = /start="([^"]*)"/.exec(t.attrs);
  if (start && !/^\d+$/.test(start[1])) return `start ${start[1]}`;
  return null;
}

function assertSafe(html: string): void {
  const problems = tags(html).map(problem).filter((p) => p !== null);
  expect(problems).toEqual([]);
}

const ATTACKS = [
  '<img src=x onerror=alert(1)>',
  '<script>alert(1)</script>',
  '<svg/onload=alert(1)>',
  '"><img src=x onerror=alert(1)>',
  '[click](javascript:alert(1))',
  '[click](JaVaScRiPt:alert(1))',
  '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[x](https://example.com/"onmouseover="alert(1))',
  'https://example.com/"><script>alert(1)</script>',
  '`<img src=x onerror=alert(1)>`',
  '```html\n<img src=x onerror=alert(1)>\n```',
  '```"><img src=x onerror=alert(1)>\ncode\n```',
  '**<img src=x onerror=alert(1)>**',
  '> <iframe src="https://evil.example"></iframe>',
  '- <a href="javascript:alert(1)">x</a>',
  '# <style>body{display:none}</style>',
  '\u00000\u0000 <b>nul placeholder forgery</b>',
  '<<img src=x onerror=alert(1)>img src=x onerror=alert(1)>',
  '![x](https://evil.example/track.png)',
  '[x]()',
  '[x](<javascript:alert(1)>)',
  '[x](//evil.example/)',
  '<https://example.com/"onmouseover="x>',
  '&lt;img src=x onerror=alert(1)&gt; &#60;script&#62;',
  '| a | b |\n|:-|-:|\n| <img src=x> | c |',
];

describe('markdown sanitizer', () => {
  it('shows <img src=x onerror=alert(1)> as text, never as an element', () => {
    const html = renderMarkdown('Here: <img src=x onerror=alert(1)>');
    expect(html).toBe('<p>Here: &lt;img src=x onerror=alert(1)&gt;</p>\n');
    assertSafe(html);
  });

  for (const attack of ATTACKS) {
    it(`neutralizes ${JSON.stringify(attack)}`, () => {
      const html = renderMarkdown(attack);
      assertSafe(html);
      expect(html).not.toMatch(/<(img|script|svg|iframe|style)/i);
    });
  }

  it('renders the supported subset', () => {
    expect(renderMarkdown('**bold** and *it* and _it_ and `a<b`')).toBe('<p><strong>bold</strong> and <em>it</em> and <em>it</em> and <code>a&lt;b</code></p>\n');
    expect(renderMarkdown('line one\nline two\n\nnext')).toBe('<p>line one<br>\nline two</p>\n<p>next</p>\n');
    expect(renderMarkdown('# Title\n- a\n- b\n1. c')).toBe('<h1>Title</h1>\n<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n<ol>\n<li>c</li>\n</ol>\n');
    expect(renderMarkdown('```js\nlet a = 1 < 2;\n```')).toBe('<pre><code class="language-js">let a = 1 &lt; 2;\n</code></pre>\n');
    expect(renderMarkdown('> quoted')).toBe('<blockquote>\n<p>quoted</p>\n</blockquote>\n');
    expect(renderMarkdown('[HF](https://huggingface.co/gpt2?a=1&b=2)')).toBe(
      '<p><a href="https://huggingface.co/gpt2?a=1&amp;b=2" target="_blank" rel="noopener noreferrer nofollow">HF</a></p>\n',
    );
    expect(renderMarkdown('snake_case_name stays')).toBe('<p>snake_case_name stays</p>\n');
    expect(renderMarkdown('~~gone~~ and 3. is prose')).toBe('<p><s>gone</s> and 3. is prose</p>\n');
    expect(renderMarkdown('see https://example.com/x?a=1. or example.com')).toBe(
      '<p>see <a href="https://example.com/x?a=1" target="_blank" rel="noopener noreferrer nofollow">https://example.com/x?a=1</a>. or example.com</p>\n',
    );
  });

  it('drops links it will not follow but keeps their text', () => {
    expect(renderMarkdown('[click](javascript:alert(1)) [empty]()')).toBe('<p>[click](javascript:alert(1)) empty</p>\n');
  });

  it('renders an unclosed fence (mid-stream) as code to the end', () => {
    expect(renderMarkdown('```\nfoo <b>')).toBe('<pre><code>foo &lt;b&gt;</code></pre>\n');
  });

  it('escapes all five HTML-special characters', () => {
    expect(escapeHtml(`<>&"'`)).toBe('&lt;&gt;&amp;&quot;&#39;');
  });

  it('is safe on random mixes of markup characters', () => {
    const alphabet = ['<', '>', '"', "'", '&', '*', '_', '`', '[', ']', '(', ')', 'javascript:', 'https://', 'img ', 'onerror=', '\n', '#', '>', '-', ' ', 'a', '\u0000'];
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 500; i++) {
      let s = '';
      for (let j = 0; j < 40; j++) s += alphabet[rand(alphabet.length)];
      assertSafe(renderMarkdown(s));
    }
  });
});

/** The deepest nesting of elements in `html` (which must be well formed). */
function depth(html: string): number {
  let d = 0;
  let max = 0;
  for (const m of html.matchAll(/<(\/?)([a-z0-9]+)[^>]*>/g)) {
    if (m[2] === 'br' || m[2] === 'hr') continue;
    d += m[1] ? -1 : 1;
    max = Math.max(max, d);
  }
  expect(d).toBe(0);
  return max;
}

const text = (html: string): string => html.replace(/<[^>]*>/g, '');

describe('no input nests deep enough to overflow the stack, and no words are lost', () => {
  // Without the nesting cap markdown-it recurses once per level: each of these overflowed.
  it('20,000 quote markers', () => {
    const html = renderMarkdown(`${'>'.repeat(20_000)} the last words`);
    expect(depth(html)).toBeLessThanOrEqual(MAX_NESTING);
    expect(text(html)).toContain('the last words');
    expect(text(html).split('&gt;').length - 1 + depth(html) - 1).toBe(20_000);
  });

  it('20,000 list markers on one line, and 3,000 lines of ever deeper indentation', () => {
    const flat = renderMarkdown(`${'- '.repeat(20_000)}the item`);
    expect(depth(flat)).toBeLessThanOrEqual(MAX_NESTING);
    expect(text(flat)).toContain('the item');
    const deep = renderMarkdown(Array.from({ length: 3000 }, (_, i) => `${'  '.repeat(i)}- item ${i}`).join('\n'));
    expect(depth(deep)).toBeLessThanOrEqual(MAX_NESTING);
    expect(text(deep)).toContain('item 2999');
    assertSafe(deep);
  });

  it('deep emphasis, brackets, links and code markers', () => {
    for (const src of [
      `${'*'.repeat(20_000)}a${'*'.repeat(20_000)}`,
      `${'['.repeat(20_000)}a${']'.repeat(20_000)}`,
      '[a]('.repeat(20_000),
      `${'_'.repeat(10_000)}a${'_'.repeat(10_000)}`,
      '> - *[`'.repeat(5_000),
      '`'.repeat(20_000),
    ]) {
      const html = renderMarkdown(src);
      assertSafe(html);
      expect(text(html).length).toBeGreaterThan(0);
    }
  });
});
