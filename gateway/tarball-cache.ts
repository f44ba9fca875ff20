/**
 * Tarballs kept on local disk after their first download from CouchDB, served from there (the
 * kernel's page cache does the rest). A published tarball never changes, but an unpublish removes it:
 * every change of a package (from the `_changes` feed) deletes its files, the cache is used only
 * while that feed is followed, and a download that overlapped a change is not kept.
 */
import { createHash, randomBytes } from 'crypto';
import { createWriteStream, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync, WriteStream } from 'fs';
import { join } from 'path';
import { Generations } from './cache';

export interface CachedTarball {
  path: string;
  etag: string;
  size: number;
}

export class TarballCache {
  /** Package name → file name → cached tarball. */
  private readonly index = new Map<string, Map<string, CachedTarball>>();
  private readonly generations = new Generations();
  private live = false;

  constructor(private readonly dir: string) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private folder(name: string): string {
    return join(this.dir, createHash('sha256').update(name).digest('hex').slice(0, 32));
  }

  get(name: string, file: string): CachedTarball | undefined {
    return this.live ? this.index.get(name)?.get(file) : undefined;
  }

  generation(name: string): string {
    return this.generations.of(name);
  }

  private record(name: string, file: string, entry: CachedTarball): void {
    const files = this.index.get(name) || new Map<string, CachedTarball>();
    files.set(file, entry);
    this.index.set(name, files);
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

  /** Stores a tarball this gateway has in hand (at publish), unless the package changed since `generation`. */
  put(name: string, file: string, generation: string, data: Buffer, etag: string): void {
    if (!this.live || generation !== this.generation(name)) return;
    const folder = this.folder(name);
    mkdirSync(folder, { recursive: true });
    const temp = join(folder, '.' + randomBytes(8).toString('hex') + '.part');
    writeFileSync(temp, data);
    const path = join(folder, file);
    renameSync(temp, path);
    this.record(name, file, { path, etag, size: data.length });
  }

  /** A package changed: its tarballs are forgotten and deleted. */
  invalidate(name: string): void {
    this.generations.bump(name);
    this.index.delete(name);
    rmSync(this.folder(name), { recursive: true, force: true });
  }

  setLive(live: boolean): void {
    if (!live) {
      this.generations.reset();
      this.index.clear();
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    }
    this.live = live;
  }
}
