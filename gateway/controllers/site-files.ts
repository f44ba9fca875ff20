/**
 * The files browsers and crawlers ask every site for: `/favicon.ico` (the registry's icon, so that a
 * page view does not ask the upstream for a package called "favicon.ico") and `/robots.txt` (a
 * company's registry is not for search engines). Answered here, before the package routes, for anyone.
 */
import { Router } from 'express';

/** A box of three stacked bars: the registry's mark, in the pages' accent colour. */
export const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#8a2a2b"/>' +
  '<path d="M8 9h16v3H8zm0 5.5h16v3H8zM8 20h16v3H8z" fill="#fff"/></svg>';
const ROBOTS = 'User-agent: *\nDisallow: /\n';
const DAY_SECONDS = 86400;

export function siteFileRoutes(): Router {
  const router = Router();
  router.get(['/favicon.ico', '/-/static/favicon.svg'], (_req, res) => {
    res.set({ 'Content-Type': 'image/svg+xml', 'Cache-Control': 'public, max-age=' + DAY_SECONDS, 'X-Content-Type-Options': 'nosniff' }).send(ICON_SVG);
  });
  router.get('/robots.txt', (_req, res) => {
    res.set({ 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'public, max-age=' + DAY_SECONDS }).send(ROBOTS);
  });
  return router;
}
