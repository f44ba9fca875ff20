/**
 * The supply-chain endpoints npm uses for `npm audit signatures`: `GET /-/npm/v1/keys` (the public
 * keys of this registry and of its upstream) and `GET /-/npm/v1/attestations/<name>@<version>` (the
 * provenance bundles of mirrored versions, fetched from the upstream on the first request and kept,
 * so they are served offline too).
 */
import { Router } from 'express';
import { isMirrored } from '../../core/provenance';
import { upstreamPath } from '../../replication/upstream';
import { Context, readPackage } from '../context';
import { forbidden, HttpError, notFound, UPSTREAM_FAILED } from '../errors';
import { decodeSegment } from '../paths';
import { withheldOf } from '../writes';

interface AttestationsDoc {
  _id: string;
  _rev?: string;
  type: 'attestations';
  /** The upstream's answer, as it was. */
  body: string;
  fetched: string;
}

/** `name@version` (the name may be scoped) → its parts, or null. */
export function parseSpec(spec: string): { name: string; version: string } | null {
  const at = spec.lastIndexOf('@');
  if (at <= 0) return null;
  return { name: spec.slice(0, at), version: spec.slice(at + 1) };
}

/** The upstream's provenance bundles of `name@version`, as it answers them (JSON). */
async function fetchAttestations(ctx: Context, name: string, version: string): Promise<string> {
  const upstream = ctx.mirror?.registry;
  const spec = name + '@' + version;
  if (!upstream) throw notFound('The attestations of ' + spec + ' are not kept here, and there is no upstream registry to ask (UPSTREAM_REGISTRY).');
  let body: string | null;
  try {
    body = await upstream.get('/-/npm/v1/attestations/' + upstreamPath(name, []).slice(1) + '@' + encodeURIComponent(version), 'the attestations of ' + spec);
  } catch (err) {
    throw new HttpError(UPSTREAM_FAILED, 'The attestations of ' + spec + ' are not here yet and ' + (err as Error).message + '. Try again later.');
  }
  if (body === null) throw notFound('The upstream registry ' + upstream.url + ' has no attestations for ' + spec + '.');
  try {
    JSON.parse(body);
  } catch {
    throw new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + upstream.url + ' sent attestations that are not JSON.');
  }
  return body;
}

export function supplyChainRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/npm/v1/keys', (_req, res, next) => {
    (async () => {
      if (!ctx.keys) throw notFound('This registry does not sign packages.');
      res.set('Cache-Control', 'max-age=300').json({ keys: await ctx.keys.keys() });
    })().catch(next);
  });

  router.get('/-/npm/v1/attestations/*', (req, res, next) => {
    (async () => {
      const spec = parseSpec(req.path.slice('/-/npm/v1/attestations/'.length).split('/').map(decodeSegment).join('/'));
      if (!spec) throw notFound('Ask for the attestations of <name>@<version>.');
      await ctx.access.assertRead(res, spec.name);
      const doc = await readPackage(ctx, spec.name);
      const manifest = doc && doc.versions[spec.version];
      if (!doc || !manifest) throw notFound('"' + spec.name + '@' + spec.version + '" is not in this registry.');
      const held = withheldOf(ctx, doc).get(spec.version);
      if (held) throw forbidden(held.reason);
      if (!isMirrored(doc, ctx.origins) || !manifest.dist || !(manifest.dist as { attestations?: unknown }).attestations) {
        throw notFound(spec.name + '@' + spec.version + ' has no attestations' + (isMirrored(doc, ctx.origins) ? ' upstream.' : ': it was published here, and this registry keeps no provenance of its own.'));
      }
      const state = ctx.couch.db<AttestationsDoc>(ctx.config.stateDb);
      const id = 'attestations:' + spec.name + '@' + spec.version;
      const kept = await state.get(id);
      const body = kept ? kept.body : await fetchAttestations(ctx, spec.name, spec.version);
      if (!kept) await state.put({ _id: id, type: 'attestations', body, fetched: new Date().toISOString() }).catch(() => undefined); // kept by another request first
      res.type('application/json').set('Cache-Control', 'max-age=300').send(body);
    })().catch(next);
  });

  return router;
}
