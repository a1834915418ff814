import MarkdownIt from 'markdown-it';
import type { MarkdownItOptions, Renderer, StateBlock, Token } from 'markdown-it';

// Model output as HTML, safe by construction: markdown-it with raw HTML off escapes every
// character of the source that is not Markdown syntax, so a reply such as
// `<img src=x onerror=alert(1)>` is shown as those characters and never becomes an element. The
// only tags are those of the Markdown below; the only attributes a checked http(s) link, a code
// language class and an ordered list's start number.
//
// CommonMark plus: line breaks kept (verse!), ~~strike~~, bare https:// URLs as links. An unclosed
// ``` fence while streaming runs to the end. No images (they would load from anywhere), no tables.
//
// markdown-it parses nested blocks (quotes, lists) by recursion, one level per container, and
// stops at `maxNesting`, dropping whatever is deeper; so a rule just above that depth shows the
// rest of the container as plain text instead, and a reply of 20,000 `>` neither overflows the
// stack nor loses its words. Inline nesting past the limit is kept as text by markdown-it itself.

/** Containers deeper than this are shown as text; far below anything that strains the stack. */
export const MAX_NESTING = 32;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** Tags renderMarkdown may produce (the unit test checks every tag of its output against this). */
export const ALLOWED_TAGS = new Set(['p', 'br', 'strong', 'em', 's', 'code', 'pre', 'a', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'hr']);

const options: MarkdownItOptions = { html: false, xhtmlOut: false, breaks: true, linkify: true, typographer: false, maxNesting: MAX_NESTING };
const md = new MarkdownIt('default', options);
md.disable(['image', 'table']);
// Only URLs written with their scheme become links: "example.com" in prose stays prose.
md.linkify.set({ fuzzyLink: false, fuzzyEmail: false, fuzzyIP: false });
// Absolute http(s) only: no javascript:, data:, vbscript:, file:, mailto: or relative links.
md.validateLink = (url: string): boolean => /^https?:\/\/[^\s]/i.test(url);

// `[text]()` and a refused destination still make a link, with an empty href: keep just the text.
md.core.ruler.push('only_web_links', (state) => {
  for (const block of state.tokens) {
    if (block.type !== 'inline' || !block.children) continue;
    let dropping = false;
    block.children = block.children.filter((t) => {
      if (t.type === 'link_open') dropping = !md.validateLink(String(t.attrGet('href') ?? ''));
      else if (t.type !== 'link_close') return true;
      const keep = !dropping;
      if (t.type === 'link_close') dropping = false;
      return keep;
    });
  }
});

md.renderer.rules.link_open = (tokens: Token[], idx: number, opts: Required<MarkdownItOptions>, _env: unknown, self: Renderer): string => {
  const t = tokens[idx];
  t.attrs = [['href', t.attrGet('href') ?? ''], ['target', '_blank'], ['rel', 'noopener noreferrer nofollow']];
  return self.renderToken(tokens, idx, opts);
};

const renderFence = md.renderer.rules.fence!;
md.renderer.rules.fence = (tokens, idx, opts, env, self) => {
  // A language name is a word; anything else in the info string would end up in a class attribute.
  const t = tokens[idx];
  if (!/^[\w+-]*$/.test(t.info.trim().split(/\s+/)[0])) t.info = '';
  return renderFence(tokens, idx, opts, env, self);
};

const DEEP = MAX_NESTING - 2;
md.block.ruler.before('code', 'too_deep', (state: StateBlock, startLine: number, endLine: number): boolean => {
  if (state.level < DEEP) return false;
  const text = state.getLines(startLine, endLine, state.blkIndent, false).replace(/\n+$/, '');
  state.push('paragraph_open', 'p', 1).map = [startLine, endLine];
  const inline = state.push('inline', '', 0);
  inline.content = text;
  inline.map = [startLine, endLine];
  inline.children = [];
  state.push('paragraph_close', 'p', -1);
  state.line = endLine;
  return true;
});

/** Markdown to HTML; see the top of this file for what is supported and why it is safe. */
export function renderMarkdown(src: string): string {
  return md.render(src);
}
