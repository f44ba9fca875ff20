/**
 * HTML for people: escaping, the page layout and how pages are sent (a strict Content-Security-Policy:
 * no scripts at all, styles inline, images from http(s) only, forms only to this registry).
 */
import { Response } from 'express';

/** Text made safe for HTML content and attribute values. */
export const escape = (text: unknown): string =>
  String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE = `
  * { box-sizing: border-box; }
  body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1f2328; background: #fff; }
  header { background: #24292f; color: #fff; padding: .6rem 1rem; display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
  header a { color: #fff; text-decoration: none; font-weight: 600; }
  header form { flex: 1; display: flex; gap: .4rem; min-width: 14rem; }
  header input[type=search] { flex: 1; padding: .35rem .5rem; border-radius: 4px; border: 0; }
  header nav { display: flex; gap: .8rem; align-items: center; }
  header nav form { display: inline; min-width: 0; flex: 0; }
  header nav button { background: none; border: 0; color: #fff; cursor: pointer; font: inherit; padding: 0; }
  main { max-width: 64rem; margin: 0 auto; padding: 1rem; }
  h1 { font-size: 1.6rem; margin: .6rem 0; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
  .muted { color: #59636e; } .error { color: #b00020; } .ok { color: #1b5e20; }
  .badge { display: inline-block; border-radius: 1rem; padding: 0 .6rem; font-size: .8rem; background: #eef1f4; margin-left: .4rem; vertical-align: middle; }
  .badge.local { background: #dafbe1; } .badge.mirrored { background: #ddf4ff; } .badge.foreign { background: #fff8c5; }
  .deprecated { background: #fff1f0; border: 1px solid #ffccc7; padding: .6rem .8rem; border-radius: 6px; }
  .layout { display: grid; grid-template-columns: minmax(0, 1fr) 18rem; gap: 2rem; }
  @media (max-width: 48rem) { .layout { grid-template-columns: 1fr; } }
  aside section { margin-bottom: 1.2rem; } aside h2 { font-size: 1rem; margin: 0 0 .3rem; }
  pre, code { font-family: ui-monospace, monospace; font-size: .9rem; }
  pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 6px; }
  ul.packages { list-style: none; padding: 0; } ul.packages li { padding: .6rem 0; border-bottom: 1px solid #eee; }
  table { border-collapse: collapse; } td, th { padding: .2rem .6rem .2rem 0; text-align: left; vertical-align: top; }
  .readme img { max-width: 100%; } .readme table td, .readme table th { border: 1px solid #d0d7de; padding: .3rem .6rem; }
  form.login { max-width: 22rem; } form.login label { display: block; margin: .6rem 0 .2rem; }
  form.login input { width: 100%; padding: .45rem; } button { padding: .45rem 1.1rem; }
`;

export interface PageUser {
  name: string;
}

/** A whole page: the header (home, search box, log in or the user and log out) around `body`. */
export function layout(options: { title: string; base: string; user?: PageUser | null; query?: string; body: string }): string {
  const { title, base, user, query, body } = options;
  const account = user
    ? `<a href="${escape(base)}/-/web/account">${escape(user.name)}</a>
       <form method="post" action="${escape(base)}/-/web/logout"><button type="submit">Log out</button></form>`
    : `<a href="${escape(base)}/-/web/login">Log in</a>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title><style>${STYLE}</style></head>
<body><header><a href="${escape(base)}/">npm registry</a>
<form method="get" action="${escape(base)}/-/web/search" role="search"><input type="search" name="q" value="${escape(query || '')}" placeholder="Search packages" aria-label="Search packages"><button type="submit">Search</button></form>
<nav>${account}</nav></header>
<main>${body}</main></body></html>`;
}

/** Sends a page with the security headers every page of the registry carries. */
export function sendHtml(res: Response, status: number, html: string): void {
  res
    .status(status)
    .set({ 'Content-Security-Policy': CONTENT_SECURITY_POLICY, 'X-Frame-Options': 'DENY', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'same-origin', 'Cache-Control': 'no-store' })
    .type('html')
    .send(html);
}
