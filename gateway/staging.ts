/**
 * The store of staged publishes (`npm stage publish`): one document per staged version in
 * `<db>-stage` (admins, that is the gateway, and the other sites' replication only; server/setup.ts),
 * holding the publish body as npm sent it without the tarball, which is the document's one attachment.
 * Nothing here is in the registry database, so nothing here is served, searched, in the change feed
 * or replicated to a downstream registry; sites replicate `<db>-stage` between them
 * (replication/sites.ts), so a version staged at one site is approved or rejected at any.
 *
 * A stage id is a UUID-shaped digest of `<name>@<version>` (npm checks that ids are UUIDs): one staged
 * publish of a version at a time, whichever gateway or site it reaches first (the second write of the
 * same id is a conflict).
 */
import { createHash } from 'crypto';
import http from 'http';
import { Couch, couchFailure, docPath } from '../couchdb/client';
import { PublishBody } from '../core/packument';

export interface StagedPublish {
  _id: string;
  _rev?: string;
  type: 'staged';
  package: string;
  version: string;
  /** The dist-tag the version gets when it is approved (`--tag`, else `latest`). */
  tag: string;
  createdAt: string;
  /** The account that staged it, and how it logged in (`token`, `automation token`, `password`). */
  actor: string;
  actorType: string;
  integrity: string;
  shasum: string;
  /** The tarball's size in bytes, and its attachment's name. */
  size: number;
  file: string;
  /** The publish body as npm sent it, without `_attachments` (the tarball is this document's attachment). */
  body: PublishBody;
  _attachments?: Record<string, { content_type: string; data?: string; stub?: boolean; length?: number }>;
}

const STAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `id` has the shape of a stage id (npm's check: a UUID; ours are lower-case). */
export const isStageId = (id: string): boolean => STAGE_ID.test(id);

/** The stage id of `name@version`: a UUID (version 8, the one for custom layouts) made of its SHA-256. */
export function stageIdOf(name: string, version: string): string {
  const hex = createHash('sha256').update('stage:' + name + '@' + version).digest('hex');
  const variant = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  return hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-8' + hex.slice(13, 16) + '-' + variant + hex.slice(17, 20) + '-' + hex.slice(20, 32);
}

/** What `npm stage list` and `npm stage view` show of a staged publish (npm prints each field). */
export function stagedItem(staged: StagedPublish): Record<string, unknown> {
  return {
    id: staged._id,
    packageName: staged.package,
    version: staged.version,
    tag: staged.tag,
    createdAt: staged.createdAt,
    actor: staged.actor,
    actorType: staged.actorType,
    shasum: staged.shasum,
    integrity: staged.integrity,
    size: staged.size,
  };
}

export class StagedStore {
  constructor(
    private readonly couch: Couch,
    private readonly db: string,
  ) {}

  /** The staged publish `id`, or null. */
  async get(id: string): Promise<StagedPublish | null> {
    const doc = await this.couch.db<StagedPublish>(this.db).get(id);
    return doc && doc.type === 'staged' ? doc : null;
  }

  /** The staged publishes among `versions` of `name` (one request). */
  async among(name: string, versions: string[]): Promise<StagedPublish[]> {
    const found = await this.couch.db<StagedPublish>(this.db).getMany(versions.map((version) => stageIdOf(name, version)));
    return [...found.values()].filter((doc) => doc.type === 'staged' && doc.package === name && versions.includes(doc.version));
  }

  /** Every staged publish (their tarballs left out). */
  async all(): Promise<StagedPublish[]> {
    const answer = await this.couch.request<{ rows: { doc?: StagedPublish }[] }>('GET', docPath(this.db) + '/_all_docs?include_docs=true');
    return answer.rows.map((row) => row.doc).filter((doc): doc is StagedPublish => !!doc && doc.type === 'staged');
  }

  /** The staged publishes of `name`. */
  async ofPackage(name: string): Promise<StagedPublish[]> {
    return (await this.all()).filter((staged) => staged.package === name);
  }

  /** Stores `staged` with its tarball (base64 `data`); false when that version is staged already. */
  async add(staged: StagedPublish, data: string): Promise<boolean> {
    try {
      await this.couch.db<StagedPublish>(this.db).put({ ...staged, _attachments: { [staged.file]: { content_type: 'application/octet-stream', data } } });
      return true;
    } catch (err) {
      if (couchFailure(err).statusCode === 409) return false;
      throw err;
    }
  }

  /** The tarball of `staged`, streamed as CouchDB sends it. */
  tarball(staged: StagedPublish): Promise<http.IncomingMessage> {
    return this.couch.streamGet(docPath(this.db, staged._id, staged.file));
  }

  /** The tarball of `staged` as base64, or null when it is gone. */
  async tarballData(staged: StagedPublish): Promise<string | null> {
    const doc = await this.couch.db<StagedPublish>(this.db).get(staged._id, { attachments: true });
    const attachment = doc && doc._attachments ? doc._attachments[staged.file] : undefined;
    return attachment && typeof attachment.data === 'string' ? attachment.data : null;
  }

  /**
   * Removes `staged` (approved or rejected): true for the one caller that removed this revision, false
   * when it is gone or changed already (another approval or rejection came first).
   */
  async remove(staged: StagedPublish): Promise<boolean> {
    try {
      await this.couch.db<StagedPublish>(this.db).remove(staged._id, staged._rev as string);
      return true;
    } catch (err) {
      if ([404, 409].includes(couchFailure(err).statusCode || 0)) return false;
      throw err;
    }
  }
}
