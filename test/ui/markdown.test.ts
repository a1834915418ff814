import { describe, expect, it } from 'vitest';
import { ALLOWED_TAGS, escapeHtml, renderMarkdown } from '../../src/app/markdown.ts';

/** Every tag in the output, with its attributes: nothing outside the allowlist may appear. */
function tags(html: string): Array<{ name: string; attrs: string }> {
  return [...html.matchAll(/<\/?([a-zA-Z0-9]+)([^>]*)>/g)].map((m) => ({ name: m[1].toLowerCase(), attrs: m[2] }));
}

function assertSafe(html: string): void {
  for (const t of tags(html)) {
    expect(ALLOWED_TAGS.has(t.name), `tag <${t.name}>`).toBe(true);
    // Attributes are only ever name="value" with no raw quote or bracket in the value.
    expect(t.attrs, `attributes of <${t.name}>`).toMatch(/^(\s+[a-z-]+="[^"<>]*")*$/);
    const attrs = [...t.attrs.matchAll(/\s([a-z-]+)="/g)].map((m) => m[1]);
    for (const a of attrs) expect(['href', 'target', 'rel', 'class'], `attribute ${a} on <${t.name}>`).toContain(a);
    const href = /href="([^"]*)"/.exec(t.attrs);
    if (href) expect(href[1]).toMatch(/^https?:\/\//i);
  }
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
];

describe('markdown sanitizer', () => {
  it('shows <img src=x onerror=alert(1)> as text, never as an element', () => {
    const html = renderMarkdown('Here: <img src=x onerror=alert(1)>');
    expect(html).toBe('<p>Here: &lt;img src=x onerror=alert(1)&gt;</p>');
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
    expect(renderMarkdown('**bold** and *it* and _it_ and `a<b`')).toBe('<p><strong>bold</strong> and <em>it</em> and <em>it</em> and <code>a&lt;b</code></p>');
    expect(renderMarkdown('line one\nline two\n\nnext')).toBe('<p>line one<br>line two</p><p>next</p>');
    expect(renderMarkdown('# Title\n- a\n- b\n1. c')).toBe('<h1>Title</h1><ul><li>a</li><li>b</li></ul><ol><li>c</li></ol>');
    expect(renderMarkdown('```js\nlet a = 1 < 2;\n```')).toBe('<pre><code class="language-js">let a = 1 &lt; 2;</code></pre>');
    expect(renderMarkdown('> quoted')).toBe('<blockquote><p>quoted</p></blockquote>');
    expect(renderMarkdown('[HF](https://huggingface.co/gpt2?a=1&b=2)')).toBe(
      '<p><a href="https://huggingface.co/gpt2?a=1&amp;b=2" target="_blank" rel="noopener noreferrer nofollow">HF</a></p>',
    );
    expect(renderMarkdown('snake_case_name stays')).toBe('<p>snake_case_name stays</p>');
  });

  it('renders an unclosed fence (mid-stream) as code to the end', () => {
    expect(renderMarkdown('```\nfoo <b>')).toBe('<pre><code>foo &lt;b&gt;</code></pre>');
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
