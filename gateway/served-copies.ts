/**
 * The packuments in memory, kept on disk from one run of the gateway to the next: when it stops, the
 * served bytes of each packument in its cache (full and abbreviated, made for one revision of the
 * package and one state of the supply-chain policy) are written to its data folder, with what they
 * were made from: the revision, the policy's fingerprint, the base URL, the build's fingerprint, the
 * versions the policy left out and until when, the upstream's validators and when the upstream was
 * last asked, and the stubs of the document's attachments. After a restart, the first read of such a
 * package costs a look at its revision tree and a file read, instead of reading and parsing the whole
 * stored document and serializing it twice again.
 *
 * Coherence: a copy is served only for the revision the package databases hold now (read at each
 * first read, as `readPackage` would find it: the local package first), so any write since, by
 * anyone (a publish, an unpublish, a dist-tag, an admin in Fauxton, a replication), makes it unused;
 * and only when the policy, the base URL and this build are the ones it was made with, and before a
 * version it left out becomes available. Each copy's bytes carry a SHA-1: a file cut short or changed
 * is not used. The copies take at most what the packument cache holds (`PACKUMENT_CACHE_MB`), written
 * anew at each stop; only the embedded server's revisions are read in this process, so on a real
 * CouchDB none are used (every first read reads the document, as before).
 */
import { createHash } from 'crypto';
import { readFileSync } from 'fs';
import { FileHandle, mkdir, open, rename, rm, writeFile } from 'fs/promises';
import { dirname, join } from 'path';
import { isMirrored } from '../core/provenance';
import { OriginValidators } from '../core/types';
import { Policy, policyActive, Withheld } from '../core/policy';
import { CachedPackument } from './cache';

/** A packument's attachments as stubs: what the in-process reads need to read each without the document. */
export type AttachmentStubs = Record<string, { content_type: string; digest: string }>;

/** What the index says of one copy (a line of JSON). */
interface CopyRecord {
  name: string;
  rev: string;
  variant: string;
  /** The fingerprint of the policy the copy was made under ('' when none applied: not mirrored, or no policy). */
  policy: string;
  origin?: string;
  validators?: OriginValidators;
  withheld?: Withheld[];
  validUntil?: number;
  attachments?: AttachmentStubs;
  /** When the mirror last compared the package with its upstream (epoch ms). */
  checkedAt?: number;
  offset: number;
  full: number;
  abbreviated: number;
  sha1: string;
}

/** The first line of the index: what every copy in it was made with. */
interface CopiesHeader {
  format: string;
  baseUrl: string;
  written: string;
}

/** A copy found for a package's current revision, its bytes checked. */
export interface ServedCopy {
  /** The served bytes with what they were made from (origin, validators, attachments' stubs). */
  entry: CachedPackument;
  /** When the mirror last compared the package with its upstream (epoch ms). */
  checkedAt?: number;
}

/**
 * The build's fingerprint: the code that shapes the served bytes (packuments, the policy and what it
 * leaves out, this module's caller). A copy made by another build is not used.
 */
function buildFingerprint(): string {
  const hash = createHash('sha1');
  for (const module of ['../core/packument', '../core/policy', '../core/advisories', '../core/licenses', '../core/provenance', './writes']) {
    try {
      hash.update(readFileSync(require.resolve(module)));
    } catch {
      hash.update(module + ' unreadable ' + Math.random());
    }
  }
  return hash.digest('hex');
}

const fingerprints = new WeakMap<Policy, string>();

/** The fingerprint of `policy` as it applies to a package (mirrored or not), '' when it leaves nothing out. */
export function policyFingerprint(policy: Policy | undefined, mirrored: boolean): string {
  if (!policy || !mirrored || !policyActive(policy)) return '';
  let known = fingerprints.get(policy);
  if (known === undefined) {
    known = createHash('sha1').update(JSON.stringify(policy)).digest('hex');
    fingerprints.set(policy, known);
  }
  return known;
}

const digestOf = (full: Buffer, abbreviated: Buffer): string => createHash('sha1').update(full).update(abbreviated).digest('hex');

/** What a copy needs from the gateway when it stops (the cache's entries and the mirror's last comparisons). */
export interface CopySource {
  entries(): Iterable<[string, CachedPackument]>;
  checkedAt(name: string): number | undefined;
}

export class ServedCopies {
  private readonly index: string;
  private readonly data: string;
  private readonly format = buildFingerprint();
  private readonly records = new Map<string, CopyRecord>();
  private file?: Promise<FileHandle | null>;
  private closed = false;
  private baseUrl = '';

  /** `path`: the copies' index; their bytes are in the file beside it (`.bin`). */
  constructor(path: string) {
    this.index = path;
    this.data = path.replace(/\.idx$/, '') + '.bin';
  }

  /**
   * Reads the index written when the gateway last stopped (none, or one that cannot be read: no
   * copies). Copies made with another build or base URL are not kept.
   */
  load(baseUrl: string): void {
    this.baseUrl = baseUrl;
    let text: string;
    try {
      text = readFileSync(this.index, 'utf8');
    } catch {
      return;
    }
    const lines = text.split('\n');
    let header: CopiesHeader;
    try {
      header = JSON.parse(lines[0]) as CopiesHeader;
    } catch {
      return;
    }
    if (!header || header.format !== this.format || header.baseUrl !== baseUrl) return;
    for (const line of lines.slice(1)) {
      if (!line) continue;
      try {
        const record = JSON.parse(line) as CopyRecord;
        if (typeof record.name === 'string' && typeof record.rev === 'string' && Number.isSafeInteger(record.offset) && Number.isSafeInteger(record.full) && Number.isSafeInteger(record.abbreviated)) {
          this.records.set(record.name, record);
        }
      } catch {
        // A line cut short: that copy is not used.
      }
    }
  }

  get size(): number {
    return this.records.size;
  }

  /** Whether a copy of `name` may exist (read nothing). */
  has(name: string): boolean {
    return this.records.has(name);
  }

  /**
   * The copy of `name` at revision `rev` (the package's current one), if it is there, whole, and made
   * for what is served now (the policy's fingerprint for it, before `validUntil`); `outdated` or
   * `damaged` (a file cut short or changed) when there is a copy that cannot be used, which is forgotten.
   */
  async take(name: string, rev: string, origins: readonly string[], policy: Policy | undefined): Promise<ServedCopy | 'outdated' | 'damaged' | null> {
    const record = this.closed ? undefined : this.records.get(name);
    if (!record) return null;
    const mirrored = isMirrored({ origin: record.origin } as Parameters<typeof isMirrored>[0], origins);
    const usable = record.rev === rev && record.policy === policyFingerprint(policy, mirrored) && (record.validUntil === undefined || Date.now() < record.validUntil);
    if (!usable) {
      this.records.delete(name);
      return 'outdated';
    }
    const bytes = await this.read(record.offset, record.full + record.abbreviated);
    if (this.records.get(name) !== record) return null;
    const full = bytes && bytes.subarray(0, record.full);
    const abbreviated = bytes && bytes.subarray(record.full);
    if (!full || !abbreviated || digestOf(full, abbreviated) !== record.sha1) {
      this.records.delete(name);
      return 'damaged';
    }
    const withheld = record.withheld && record.withheld.length ? new Map(record.withheld.map((w) => [w.version, w])) : undefined;
    return {
      entry: { rev: record.rev, variant: record.variant, full, abbreviated, mirrored, withheld, validUntil: record.validUntil, policy: record.policy, origin: record.origin, validators: record.validators, attachments: record.attachments },
      checkedAt: record.checkedAt,
    };
  }

  /** Forgets the copy of `name` (the package changed). */
  forget(name: string): void {
    this.records.delete(name);
  }

  private async read(offset: number, length: number): Promise<Buffer | null> {
    // Closed at the stop: a read after it would open the file again, and nothing would close it.
    if (this.closed) return null;
    if (!this.file) this.file = open(this.data, 'r').catch(() => null);
    const handle = await this.file;
    if (!handle) return null;
    try {
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      return bytesRead === length ? buffer : null;
    } catch {
      return null;
    }
  }

  /**
   * Writes the copies of what `source` holds now (replacing the ones written last time): the bytes
   * first, then the index, each to a new file renamed into place, so that a stop cut short leaves
   * either the old copies or the new ones (a mismatch between them fails the SHA-1s).
   */
  async save(source: CopySource): Promise<number> {
    // At the stop: the copies read so far are not read again, whatever fails below.
    await this.close();
    await mkdir(dirname(this.index), { recursive: true, mode: 0o700 });
    const header: CopiesHeader = { format: this.format, baseUrl: this.baseUrl, written: new Date().toISOString() };
    const lines = [JSON.stringify(header)];
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const [name, entry] of source.entries()) {
      if (entry.policy === undefined) continue; // not made by servedBytes (nothing to check it against)
      const record: CopyRecord = {
        name,
        rev: entry.rev,
        variant: entry.variant || '',
        policy: entry.policy,
        origin: entry.origin,
        validators: entry.validators,
        withheld: entry.withheld ? [...entry.withheld.values()] : undefined,
        validUntil: entry.validUntil,
        attachments: entry.attachments,
        checkedAt: source.checkedAt(name),
        offset,
        full: entry.full.length,
        abbreviated: entry.abbreviated.length,
        sha1: digestOf(entry.full, entry.abbreviated),
      };
      lines.push(JSON.stringify(record));
      chunks.push(entry.full, entry.abbreviated);
      offset += entry.full.length + entry.abbreviated.length;
    }
    const suffix = '.' + process.pid + '.tmp';
    // Written a batch at a time: the bytes are already in memory once, not twice.
    const out = await open(this.data + suffix, 'w', 0o600);
    try {
      for (let i = 0; i < chunks.length; i += 64) {
        const batch = chunks.slice(i, i + 64);
        const { bytesWritten } = await out.writev(batch);
        if (bytesWritten !== batch.reduce((n, chunk) => n + chunk.length, 0)) throw new Error('the copies could not be written whole (disk full?)');
      }
    } finally {
      await out.close();
    }
    await writeFile(this.index + suffix, lines.join('\n') + '\n', { mode: 0o600 });
    await rename(this.data + suffix, this.data);
    await rename(this.index + suffix, this.index);
    return lines.length - 1;
  }

  /** Closes the copies' file (at the stop): none is read after it. */
  async close(): Promise<void> {
    this.closed = true;
    const handle = await this.file;
    this.file = undefined;
    await handle?.close().catch(() => undefined);
  }

  /** Removes the copies (a data folder without them). */
  async remove(): Promise<void> {
    await this.close();
    this.records.clear();
    await rm(this.data, { force: true });
    await rm(this.index, { force: true });
  }
}

/** Where the copies of `registryDb`'s gateway are kept in `dataDir`. */
export function copiesPath(dataDir: string, registryDb: string): string {
  return join(dataDir, 'cache', 'packuments-' + registryDb.replace(/[^a-z0-9_-]/g, '_') + '.idx');
}
