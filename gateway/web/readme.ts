/**
 * Readmes rendered for the package page: Markdown (marked, GitHub flavour) turned into HTML, code
 * blocks highlighted on the server (highlight.js, for the language a block names), then sanitized
 * (sanitize-html) down to an allow-list of tags and attributes. Nothing from a readme can run: no
 * scripts, no event-handler or style attributes, no `javascript:` or `data:` links, no frames or
 * forms; links open without handing this page to the target. Highlighting adds only `<span>`s with
 * `hljs-…` classes, which the sanitizer lets through and nothing else. The page's
 * Content-Security-Policy allows only the registry's own scripts as a second wall.
 */
import hljs from 'highlight.js/lib/common';
import { Marked, Tokens } from 'marked';
import sanitizeHtml from 'sanitize-html';
import { escape } from './html';

const ALLOWED_TAGS = [
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'p', 'br', 'hr', 'a', 'img', 'ul', 'ol', 'li', 'blockquote', 'pre', 'code', 'em', 'strong',
  'del', 's', 'sup', 'sub', 'kbd', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'details', 'summary', 'dl', 'dt', 'dd', 'span', 'div',
];

const SANITIZE: sanitizeHtml.IOptions = {
  allowedTags: ALLOWED_TAGS,
  allowedAttributes: {
    a: ['href', 'title', 'name', 'id', 'rel'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    code: ['class'],
    span: ['class'],
    th: ['align'],
    td: ['align'],
    h1: ['id'], h2: ['id'], h3: ['id'], h4: ['id'],
  },
  allowedClasses: { code: [/^language-[a-z0-9+#-]+$/i, 'hljs'], span: [/^hljs-[a-z_-]+$/, /^[a-z_]+_$/] },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['http', 'https'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  transformTags: {
    a: (tagName, attribs) => ({ tagName, attribs: { ...attribs, rel: 'nofollow noopener noreferrer' } }),
  },
};

/** A code block longer than this is shown as plain text: highlighting is for reading, not for megabytes. */
const MAX_HIGHLIGHTED_CHARS = 100_000;

/**
 * A fenced code block as HTML: highlighted when it names a language highlight.js knows (`js`, `ts`,
 * `sh`, `json`…), else escaped text. highlight.js escapes the code itself.
 */
function codeBlock({ text, lang }: Tokens.Code): string {
  const language = String(lang || '').trim().split(/\s+/)[0].toLowerCase();
  const known = language && /^[a-z0-9+#-]+$/.test(language) && hljs.getLanguage(language) !== undefined;
  if (!known || text.length > MAX_HIGHLIGHTED_CHARS) {
    return `<pre><code${language && /^[a-z0-9+#-]+$/.test(language) ? ` class="language-${language}"` : ''}>${escape(text)}</code></pre>\n`;
  }
  const html = hljs.highlight(text, { language, ignoreIllegals: true }).value;
  return `<pre><code class="hljs language-${language}">${html}</code></pre>\n`;
}

const markdown = new Marked({ gfm: true, async: false, renderer: { code: codeBlock } });

/** The readme as safe HTML; an empty string when there is none. At most the first 500 KB are rendered. */
export function renderReadme(text: unknown): string {
  if (typeof text !== 'string' || !text.trim()) return '';
  const html = markdown.parse(text.slice(0, 500_000)) as string;
  return sanitizeHtml(html, SANITIZE);
}
