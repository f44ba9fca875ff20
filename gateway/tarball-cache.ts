/**
 * Tarballs kept after their first download from CouchDB: small ones (most of npm's) in memory only,
 * within a byte budget, sent from there without touching the disk (they are in CouchDB, and are read
 * from there again if memory let them go); larger ones on local disk, served from there (the
 * kernel's page cache does the rest). A small tarball this gateway has in hand (published here, or
 * verified from the upstream) is kept in memory the same way. A published tarball never changes,
 * but an unpublish removes it: every change of a package (from the `_changes` feed) forgets its
 * files, the cache is used only while that feed is followed, and a download that overlapped a
 * change is not kept.
 */
import { createHash, randomBytes } from 'crypto';
import { createWriteStream, mkdirSync, readFile, renameSync, rmSync, unlinkSync, WriteStream } from 'fs';
import { mkdir, rename, rm, writeFile } from 'fs/promises';
import { join } from 'path';
import { Generations } from './cache';

export interface CachedTarball {
  /** Its file on local disk; none for a tarball kept in memory only (it leaves the cache with its bytes). */
  path?: string;
  etag: string;
  size: number;
  /** The bytes, when the tarball is small enough to be kept in memory. */
  data?: Buffer;
}

/** Tarballs up to this size are kept in memory too. */
export const MEMORY_TARBALL_BYTES = 512 * 1024;

export class TarballCache {
  /** Package name → file name → cached tarball. */
  private readonly index = new Map<string, Map<string, CachedTarball>>();
  private readonly generations = new Generations();
  private live = false;

  /** In-memory tarballs, least recently used first, and their bytes. */
  private readonly inMemory = new Map<CachedTarball, number>();
  private memoryBytes = 0;
  /** Tarballs kept in memory only, and where the index lists them (they leave it with their bytes). */
  private readonly memoryOnly = new Map<CachedTarball, { name: string; file: string }>();

  constructor(
    private readonly dir: string,
    /** Memory for small tarballs (0: none). */
    private readonly memoryBudget = 64 * 1024 * 1024,
  ) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Keeps `entry`'s bytes in memory, the least recently used ones leaving to stay within the budget. */
  private remember(entry: CachedTarball, data: Buffer): void {
    if (data.length > MEMORY_TARBALL_BYTES || data.length > this.memoryBudget) return;
    entry.data = data;
    this.inMemory.set(entry, data.length);
    this.memoryBytes += data.length;
    for (const [old, size] of this.inMemory) {
      if (this.memoryBytes <= this.memoryBudget) break;
      this.forgetBytes(old, size);
    }
  }

  private forgetBytes(entry: CachedTarball, size = this.inMemory.get(entry)): void {
    if (size === undefined) return;
    this.inMemory.delete(entry);
    this.memoryBytes -= size;
    delete entry.data;
    const listed = this.memoryOnly.get(entry);
    if (!listed) return;
    this.memoryOnly.delete(entry);
    const files = this.index.get(listed.name);
    if (files?.get(listed.file) !== entry) return;
    files.delete(listed.file);
    if (files.size === 0) this.index.delete(listed.name);
  }

  private folder(name: string): string {
    return join(this.dir, createHash('sha256').update(name).digest('hex').slice(0, 32));
  }

  get(name: string, file: string): CachedTarball | undefined {
    if (!this.live) return undefined;
    const entry = this.index.get(name)?.get(file);
    if (!entry) return undefined;
    const size = this.inMemory.get(entry);
    if (size !== undefined) {
      // Most recently used last.
      this.inMemory.delete(entry);
      this.inMemory.set(entry, size);
    } else if (entry.path && entry.size <= MEMORY_TARBALL_BYTES && this.memoryBudget > 0) {
      // A small tarball only on disk (the memory was full): read back for the next requests.
      const generation = this.generation(name);
      readFile(entry.path, (err, data) => {
        if (!err && data.length === entry.size && generation === this.generation(name) && this.index.get(name)?.get(file) === entry && !entry.data) this.remember(entry, data);
      });
    }
    return entry;
  }

  generation(name: string): string {
    return this.generations.of(name);
  }

  private record(name: string, file: string, entry: CachedTarball, data?: Buffer): void {
    const old = this.index.get(name)?.get(file);
    if (old && old !== entry) this.forgetBytes(old);
    const files = this.index.get(name) || new Map<string, CachedTarball>();
    files.set(file, entry);
    this.index.set(name, files);
    if (data) this.remember(entry, data);
  }

  /** A temporary file to download into; `keep` stores it if nothing changed the package since `generation`. */
  begin(name: string, file: string, generation: string): { stream: WriteStream; keep(etag: string, size: number): void; drop(): void } | null {
    if (!this.live) return null;
    const folder = this.folder(name);
    mkdirSync(folder, { recursive: true });
    const temp = join(folder, '.' + randomBytes(8).toString('hex') + '.part');
    const stream = createWriteStream(temp);
    const drop = () => {
      stream.destroy();
      try {
        unlinkSync(temp);
      } catch {
        /* already gone */
      }
    };
    return {
      stream,
      drop,
      keep: (etag: string, size: number) => {
        if (!this.live || generation !== this.generation(name) || stream.bytesWritten !== size) return drop();
        const path = join(folder, file);
        renameSync(temp, path);
        this.record(name, file, { path, etag, size });
      },
    };
  }

  /**
   * Keeps a tarball this gateway has in hand (at publish, verified from the upstream, or just read
   * from CouchDB), unless the package changed since `generation`. A small one is kept in memory only,
   * at once: creating a file costs more than the rest of serving it (about 1 ms of CPU here), and
   * CouchDB holds it anyway. A larger one is listed once its file is written. Resolves once it is
   * kept (or not); a file whose package changed meanwhile is removed again.
   */
  async put(name: string, file: string, generation: string, data: Buffer, etag: string): Promise<void> {
    if (!this.live || generation !== this.generation(name)) return;
    if (data.length <= MEMORY_TARBALL_BYTES && data.length <= this.memoryBudget) {
      const entry: CachedTarball = { etag, size: data.length };
      this.record(name, file, entry, data);
      if (entry.data) this.memoryOnly.set(entry, { name, file });
      return;
    }
    const folder = this.folder(name);
    const path = join(folder, file);
    const temp = join(folder, '.' + randomBytes(8).toString('hex') + '.part');
    try {
      await mkdir(folder, { recursive: true });
      await writeFile(temp, data);
      await rename(temp, path);
    } catch {
      // The package changed meanwhile (its folder went away), or the disk is full: not kept.
      await rm(temp, { force: true });
      return;
    }
    if (!this.live || generation !== this.generation(name)) {
      // Unless a later download of the same (immutable) file is kept there now.
      if (!this.index.get(name)?.get(file)) await rm(path, { force: true });
      return;
    }
    this.record(name, file, { path, etag, size: data.length });
  }

  /** A package changed: its tarballs are forgotten and deleted. */
  invalidate(name: string): void {
    this.generations.bump(name);
    for (const entry of this.index.get(name)?.values() || []) this.forgetBytes(entry);
    this.index.delete(name);
    rmSync(this.folder(name), { recursive: true, force: true });
  }

  setLive(live: boolean): void {
    if (!live) {
      this.generations.reset();
      this.index.clear();
      this.inMemory.clear();
      this.memoryOnly.clear();
      this.memoryBytes = 0;
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    }
    this.live = live;
  }
}
