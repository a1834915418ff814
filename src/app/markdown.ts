// Model output as HTML, safe by construction: every character of the source is HTML-escaped
// first, and only the tags this file writes itself (no attributes but a checked https link and a
// code language class) can appear in the result. So a reply such as
// `<img src=x onerror=alert(1)>` is shown as those characters and never becomes an element.
//
// Supported: paragraphs with line breaks kept (verse!), # headings, > quotes, - / 1. lists,
// ``` fenced code (an unclosed fence while streaming runs to the end), `code`, **bold**,
// *italic* / _italic_, ~~strike~~, [links](https://…) and bare https:// URLs, --- rules.

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** Tags renderMarkdown may produce (the unit test checks every tag of its output against this). */
export const ALLOWED_TAGS = new Set(['p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'a', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'hr']);

/** Inline markup on already-escaped text. */
function inlineEscaped(escaped: string): string {
  let s = escaped;
  s = s.replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>');
  s = s.replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
  s = s.replace(/(^|[^\w*])\*(?=\S)([^*]*?\S)\*(?!\w)/g, '$1<em>$2</em>');
  s = s.replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1<em>$2</em>');
  return s;
}

/** A link target we are willing to render: absolute http(s) only (no javascript:, data:, …). */
function safeUrl(escapedUrl: string): string | null {
  // The URL is already escaped: "&amp;" is a plain "&", and no quote or angle bracket is left raw.
  // Quotes and angle brackets (escaped as entities) have no business in a link: refuse them.
  return /^https?:\/\/(?:[^\s&]|&amp;)+$/i.test(escapedUrl) ? escapedUrl : null;
}

const link = (href: string, text: string): string => `<a href="${href}" target="_blank" rel="noopener noreferrer nofollow">${text}</a>`;

/** One line (or paragraph) of inline Markdown to HTML. */
export function renderInline(src: string): string {
  // Code spans first: their content is literal.
  const parts = src.split(/(`[^`\n]+`)/g);
  return parts
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
      let e = escapeHtml(part);
      const links: string[] = [];
      // Hide links behind placeholders so emphasis rules do not reach into their URLs.
      e = e.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (whole, text: string, url: string) => {
        const href = safeUrl(url);
        if (href === null) return whole;
        links.push(link(href, inlineEscaped(text)));
        return `\u0000${links.length - 1}\u0000`;
      });
      e = e.replace(/(^|[\s(])(https?:\/\/(?:[^\s&]|&amp;)*[^\s&.,;:!?)])/gi, (_w, pre: string, url: string) => {
        links.push(link(url, url));
        return `${pre}\u0000${links.length - 1}\u0000`;
      });
      e = inlineEscaped(e);
      return e.replace(/\u0000(\d+)\u0000/g, (_w, n: string) => links[Number(n)]);
    })
    .join('');
}

/** Markdown to HTML; see the top of this file for what is supported and why it is safe. */
export function renderMarkdown(src: string): string {
  // A NUL could forge the link placeholders above.
  const lines = src.replace(/\r\n?/g, '\n').replace(/\u0000/g, '\uFFFD').split('\n');
  const out: string[] = [];
  let para: string[] = [];
  const flush = (): void => {
    if (para.length > 0) out.push(`<p>${para.map(renderInline).join('<br>')}</p>`);
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)\s*([\w+-]*)\s*$/.exec(line);
    if (fence) {
      flush();
      const code: string[] = [];
      i++;
      while (i < lines.length && !new RegExp(`^\\s*${fence[1]}\\s*$`).test(lines[i])) code.push(lines[i++]);
      const lang = fence[2] ? ` class="language-${fence[2]}"` : '';
      out.push(`<pre><code${lang}>${escapeHtml(code.join('\n'))}</code></pre>`);
      continue;
    }
    if (line.trim() === '') {
      flush();
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      const n = heading[1].length;
      out.push(`<h${n}>${renderInline(heading[2])}</h${n}>`);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      out.push('<hr>');
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ''));
      i--;
      out.push(`<blockquote>${renderMarkdown(quoted.join('\n'))}</blockquote>`);
      continue;
    }
    const bullet = /^\s*[-*+]\s+/;
    const numbered = /^\s*\d{1,9}[.)]\s+/;
    if (bullet.test(line) || numbered.test(line)) {
      flush();
      const re = bullet.test(line) ? bullet : numbered;
      const tag = re === bullet ? 'ul' : 'ol';
      const items: string[] = [];
      while (i < lines.length && re.test(lines[i])) items.push(`<li>${renderInline(lines[i++].replace(re, ''))}</li>`);
      i--;
      out.push(`<${tag}>${items.join('')}</${tag}>`);
      continue;
    }
    para.push(line);
  }
  flush();
  return out.join('');
}
