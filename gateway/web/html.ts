/**
 * HTML for people: escaping, the page layout and how pages are sent (a strict Content-Security-Policy:
 * scripts only from this registry (`/-/static/…`), none inline; styles inline, images from http(s)
 * only, forms only to this registry). Light and dark (`prefers-color-scheme`), and a layout for phones.
 * Every page works without its script: it only adds copy buttons beside commands, which are
 * selectable text without it.
 */
import { Response } from 'express';

/** Text made safe for HTML content and attribute values. */
export const escape = (text: unknown): string =>
  String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src http: https: data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/** The pages' one script (served at `/-/static/pages.js`): a copy button beside each `code.copy`. */
export const PAGE_SCRIPT = `'use strict';
document.querySelectorAll('code.copy').forEach(function (code) {
  if (!navigator.clipboard) return;
  var button = document.createElement('button');
  button.type = 'button';
  button.className = 'copy-button';
  button.textContent = 'Copy';
  button.setAttribute('aria-label', 'Copy ' + code.textContent);
  button.addEventListener('click', function () {
    navigator.clipboard.writeText(code.textContent).then(function () {
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = 'Copy'; }, 1500);
    }, function () { button.textContent = 'Select and copy'; });
  });
  code.parentNode.insertBefore(button, code.nextSibling);
});
`;

const STYLE = `
  :root { color-scheme: light dark; --fg: #1f2328; --bg: #fff; --muted: #59636e; --line: #d0d7de; --soft: #f6f8fa; --link: #0969da;
    --head: #24292f; --badge: #eef1f4; --local: #dafbe1; --mirrored: #ddf4ff; --foreign: #fff8c5; --warn-bg: #fff1f0; --warn-line: #ffccc7;
    --error: #b00020; --ok: #1b5e20; --kw: #cf222e; --str: #0a3069; --com: #6e7781; --num: #0550ae; --fn: #8250df; }
  @media (prefers-color-scheme: dark) {
    :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --soft: #161b22; --link: #4493f8;
      --head: #010409; --badge: #262c36; --local: #1b4721; --mirrored: #0c2d6b; --foreign: #4b3b00; --warn-bg: #3c1618; --warn-line: #8e1519;
      --error: #ff7b72; --ok: #7ee787; --kw: #ff7b72; --str: #a5d6ff; --com: #9198a1; --num: #79c0ff; --fn: #d2a8ff; }
  }
  * { box-sizing: border-box; }
  body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: var(--fg); background: var(--bg); }
  a { color: var(--link); }
  header { background: var(--head); color: #fff; padding: .6rem 1rem; display: flex; gap: .6rem 1rem; align-items: center; flex-wrap: wrap; }
  header a { color: #fff; text-decoration: none; font-weight: 600; }
  header form[role=search] { flex: 1 1 14rem; display: flex; gap: .4rem; min-width: 0; }
  header input[type=search] { flex: 1; min-width: 0; padding: .35rem .5rem; border-radius: 4px; border: 0; }
  header nav { display: flex; gap: .8rem; align-items: center; white-space: nowrap; }
  header nav form { display: inline; min-width: 0; flex: 0; }
  header nav button { background: none; border: 0; color: #fff; cursor: pointer; font: inherit; padding: 0; }
  @media (max-width: 40rem) {
    header { padding: .5rem .75rem; }
    header > a { flex: 1; }
    header form[role=search] { order: 3; flex: 1 1 100%; }
    main { padding: .75rem; }
    nav.tabs { gap: 0 .8rem; font-size: .9rem; }
    table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; width: auto; }
    table.stack thead { display: none; }
    table.stack tr { padding: .45rem 0; border-bottom: 1px solid var(--line); }
    table.stack td, table.list.stack td { border: 0; padding: .1rem 0; }
    table.stack td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); }
  }
  main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
  h1 { font-size: 1.6rem; margin: .6rem 0; overflow-wrap: anywhere; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
  .muted { color: var(--muted); } .error { color: var(--error); } .ok { color: var(--ok); }
  .badge { display: inline-block; white-space: nowrap; border-radius: 1rem; padding: 0 .6rem; font-size: .8rem; font-weight: normal; background: var(--badge); margin-left: .4rem; vertical-align: middle; }
  .badge.local { background: var(--local); } .badge.mirrored { background: var(--mirrored); } .badge.foreign { background: var(--foreign); } .badge.bad { background: var(--warn-bg); color: var(--error); }
  .deprecated { background: var(--warn-bg); border: 1px solid var(--warn-line); padding: .6rem .8rem; border-radius: 6px; }
  .layout { display: grid; grid-template-columns: minmax(0, 1fr) 20rem; gap: 2rem; }
  @media (max-width: 48rem) { .layout { grid-template-columns: minmax(0, 1fr); } }
  aside section { margin-bottom: 1.2rem; overflow-wrap: anywhere; } aside h2 { font-size: 1rem; margin: 0 0 .3rem; }
  aside ul { margin: 0; padding-left: 1.2rem; }
  pre, code { font-family: ui-monospace, monospace; font-size: .9rem; }
  pre { background: var(--soft); padding: .8rem; overflow-x: auto; border-radius: 6px; }
  ul.packages { list-style: none; padding: 0; } ul.packages li { padding: .6rem 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
  table { border-collapse: collapse; } td, th { padding: .2rem .6rem .2rem 0; text-align: left; vertical-align: top; }
  .scroll { overflow-x: auto; max-width: 100%; }
  table.list { width: 100%; } td.date { white-space: nowrap; } table.list td, table.list th { border-bottom: 1px solid var(--line); padding: .35rem .6rem .35rem 0; }
  .readme img { max-width: 100%; } .readme table td, .readme table th { border: 1px solid var(--line); padding: .3rem .6rem; }
  form.login { max-width: 22rem; } form.login label { display: block; margin: .6rem 0 .2rem; }
  form.login input { width: 100%; padding: .45rem; } button { padding: .45rem 1.1rem; }
  form.inline { display: inline; } form.inline button { padding: .15rem .6rem; }
  .install { list-style: none; padding: 0; margin: 0; } .install li { display: flex; gap: .4rem; align-items: center; margin-bottom: .3rem; }
  code.copy { flex: 1; min-width: 0; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .3rem .5rem; user-select: all; overflow-wrap: anywhere; }
  .copy-button { padding: .25rem .6rem; font-size: .8rem; }
  .keywords a { display: inline-block; background: var(--badge); border-radius: 1rem; padding: 0 .6rem; margin: 0 .3rem .3rem 0; text-decoration: none; font-size: .85rem; }
  nav.tabs { display: flex; gap: 1.2rem; border-bottom: 1px solid var(--line); margin-bottom: 1rem; flex-wrap: wrap; }
  nav.tabs a { padding: .4rem 0; text-decoration: none; font-weight: 600; }
  .panels > section { display: none; } .panels > section:target { display: block; }
  .panels:not(:has(> section:target)) > section.default { display: block; }
  .panels > section > h2:first-child { margin-top: 0; }
  .hljs-keyword, .hljs-literal, .hljs-built_in, .hljs-selector-tag { color: var(--kw); } .hljs-string, .hljs-regexp, .hljs-attr { color: var(--str); }
  .hljs-comment, .hljs-quote, .hljs-meta { color: var(--com); font-style: italic; } .hljs-number, .hljs-variable, .hljs-params { color: var(--num); }
  .hljs-title, .hljs-function, .hljs-section, .hljs-name { color: var(--fn); }
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
<title>${escape(title)}</title><link rel="icon" type="image/svg+xml" href="${escape(base)}/-/static/favicon.svg"><style>${STYLE}</style></head>
<body><header><a href="${escape(base)}/">npm registry</a>
<form method="get" action="${escape(base)}/-/web/search" role="search"><input type="search" name="q" value="${escape(query || '')}" placeholder="Search packages" aria-label="Search packages"><button type="submit">Search</button></form>
<nav>${account}</nav></header>
<main>${body}</main><script src="${escape(base)}/-/static/pages.js" defer></script></body></html>`;
}

/** Sends a page with the security headers every page of the registry carries. */
export function sendHtml(res: Response, status: number, html: string): void {
  res
    .status(status)
    .set({ 'Content-Security-Policy': CONTENT_SECURITY_POLICY, 'X-Frame-Options': 'DENY', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'same-origin', 'Cache-Control': 'no-store' })
    .type('html')
    .send(html);
}
