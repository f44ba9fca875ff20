/**
 * Readmes rendered for the package page: Markdown (marked, GitHub flavour) turned into HTML, then
 * sanitized (sanitize-html) down to an allow-list of tags and attributes. Nothing from a readme can
 * run: no scripts, no event-handler or style attributes, no `javascript:` or `data:` links, no frames
 * or forms; links open without handing this page to the target. The page's Content-Security-Policy
 * forbids scripts as a second wall.
 */
import { marked } from 'marked';
import sanitizeHtml from 'sanitize-html';

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
    th: ['align'],
    td: ['align'],
    h1: ['id'], h2: ['id'], h3: ['id'], h4: ['id'],
  },
  allowedClasses: { code: [/^language-[a-z0-9+#-]+$/i] },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['http', 'https'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  transformTags: {
    a: (tagName, attribs) => ({ tagName, attribs: { ...attribs, rel: 'nofollow noopener noreferrer' } }),
  },
};

/** The readme as safe HTML; an empty string when there is none. At most the first 500 KB are rendered. */
export function renderReadme(markdown: unknown): string {
  if (typeof markdown !== 'string' || !markdown.trim()) return '';
  const html = marked.parse(markdown.slice(0, 500_000), { async: false, gfm: true }) as string;
  return sanitizeHtml(html, SANITIZE);
}
