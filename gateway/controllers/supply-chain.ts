/**
 * The supply-chain endpoints npm uses for `npm audit signatures`: `GET /-/npm/v1/keys` (the public
 * keys of this registry and of its upstream) and `GET /-/npm/v1/attestations/<name>@<version>` (the
 * provenance bundles of versions: of a version published here with `npm publish --provenance`, the
 * bundle kept with it as the attachment `<name>-<version>.sigstore`; of a mirrored version, the
 * upstream's answer, fetched on the first request and kept, so that it is served offline too).
 */
import { Router } from 'express';
import { provenanceFileName } from '../../core/names';
import { isMirrored } from '../../core/provenance';
import { PackageDoc, VersionManifest } from '../../core/types';
import { docPath } from '../../couchdb/client';
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
  // The upstream the package is routed to, and no other.
  const upstream = ctx.upstreams.upstreamFor(name)?.registry;
  const spec = name + '@' + version;
  if (!upstream) throw notFound('The attestations of ' + spec + ' are not kept here, and no upstream registry is configured for it (UPSTREAMS, UPSTREAM_REGISTRY).');
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

/** The predicate type `dist.attestations` names for a version, or the one its statement names. */
function predicateTypeOf(manifest: VersionManifest, bundle: { dsseEnvelope?: { payload?: unknown } }): unknown {
  const attestations = manifest.dist.attestations as { provenance?: { predicateType?: unknown } } | undefined;
  if (attestations && attestations.provenance && typeof attestations.provenance.predicateType === 'string') return attestations.provenance.predicateType;
  try {
    return JSON.parse(Buffer.from(String(bundle.dsseEnvelope?.payload), 'base64').toString('utf8')).predicateType;
  } catch {
    return undefined;
  }
}

/**
 * The provenance bundle kept with a version (published here, or replicated with it from another site
 * or a CouchDB upstream), in npm's attestations answer, or null when the document keeps none.
 */
async function keptBundle(ctx: Context, doc: PackageDoc, version: string): Promise<string | null> {
  const file = provenanceFileName(doc.name, version);
  if (!doc._attachments || !doc._attachments[file]) return null;
  const db = isMirrored(doc, ctx.origins) ? ctx.config.mirrorDb : ctx.config.registryDb;
  const response = await ctx.couch.streamGet(docPath(db, doc.name, file));
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  if (response.statusCode === 404) return null;
  if (response.statusCode !== 200) {
    throw new HttpError(502, 'The registry database failed to send the provenance of ' + doc.name + '@' + version + ' (' + response.statusCode + '). Try again later.');
  }
  let bundle: { dsseEnvelope?: { payload?: unknown } };
  try {
    bundle = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    // It was checked when published; only an admin's edit in the database can have changed it.
    throw new HttpError(502, 'The provenance bundle kept for ' + doc.name + '@' + version + ' is not JSON; an admin should look at "' + file + '" in the database.');
  }
  return JSON.stringify({ attestations: [{ predicateType: predicateTypeOf(doc.versions[version], bundle), bundle }] });
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
      if (!doc) throw await ctx.access.missing(res, spec.name, notFound('"' + spec.name + '@' + spec.version + '" is not in this registry.'));
      if (!manifest) throw notFound('"' + spec.name + '@' + spec.version + '" is not in this registry.');
      const held = withheldOf(ctx, doc).get(spec.version);
      if (held) throw forbidden(held.reason);
      const own = await keptBundle(ctx, doc, spec.version);
      if (own) {
        res.type('application/json').set('Cache-Control', 'max-age=300').send(own);
        return;
      }
      if (!isMirrored(doc, ctx.origins) || !manifest.dist || !(manifest.dist as { attestations?: unknown }).attestations) {
        throw notFound(spec.name + '@' + spec.version + ' has no attestations' +
          (isMirrored(doc, ctx.origins) ? ' upstream.' : ': it was published here without provenance (`npm publish --provenance`).'));
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
