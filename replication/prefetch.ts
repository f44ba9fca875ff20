/**
 * Pull-through ahead of the client: once a package has come from the upstream, the packuments its
 * latest version depends on are fetched too, a few at a time, while the client is still reading the
 * first one. npm asks for a packument, reads it, then asks for its dependencies': each of those is
 * then answered from memory instead of costing an upstream round trip and a database read on the
 * client's path. Only a package a client read is expanded (the mirror decides when), so prefetching
 * stays one level ahead of clients. Names the registry may not take from the upstream, or that it
 * has, are never asked.
 */
import { packageNameProblem } from '../core/names';
import { UpstreamPackument } from '../core/mirrored';

/** Names waiting to be prefetched at most: a package with more dependencies than this gets the first ones. */
const MAX_QUEUED = 1_000;

/** The specs npm resolves against a registry: ranges, versions, tags, and `npm:` aliases. */
const NOT_FROM_REGISTRY = /^(?:[a-z+]+:|\.{0,2}\/|~\/|[^@/\s]+\/[^/\s]+$)/i;

/**
 * The packages the latest version of `packument` depends on (`dependencies`, `optionalDependencies`,
 * `peerDependencies`, all of which npm reads), as the registry names them: an alias `npm:x@1` is `x`,
 * and specs that do not come from a registry (git, URLs, files, `user/repo`) are left out.
 */
export function dependencyNames(packument: UpstreamPackument): string[] {
  const latest = packument['dist-tags'] && packument['dist-tags'].latest;
  const manifest = typeof latest === 'string' && packument.versions ? packument.versions[latest] : undefined;
  if (!manifest || typeof manifest !== 'object') return [];
  const names = new Set<string>();
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'] as const) {
    const specs = (manifest as Record<string, unknown>)[field];
    if (!specs || typeof specs !== 'object' || Array.isArray(specs)) continue;
    for (const [key, value] of Object.entries(specs as Record<string, unknown>)) {
      const spec = typeof value === 'string' ? value.trim() : '';
      let name = key;
      if (spec.startsWith('npm:')) {
        const target = spec.slice(4);
        const at = target.indexOf('@', 1);
        name = at === -1 ? target : target.slice(0, at);
      } else if (NOT_FROM_REGISTRY.test(spec)) {
        continue;
      }
      if (packageNameProblem(name, false) === null) names.add(name);
    }
  }
  return [...names];
}

/** Fetches the dependencies of pulled packages ahead of the client, at most `limit` at once. */
export class Prefetcher {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private running = 0;
  private stopped = false;

  constructor(
    /** How many prefetches run at once; 0 turns prefetching off. */
    private readonly limit: number,
    /** Whether `name` is worth fetching now (asked once when queued and again when its turn comes). */
    private readonly wanted: (name: string) => boolean,
    /** Fetches `name` as pull-through does; failures are the fetch's to report. */
    private readonly fetch: (name: string) => Promise<unknown>,
  ) {}

  /** Queues the packages the latest version of `packument` depends on. */
  dependenciesOf(packument: UpstreamPackument): void {
    if (this.limit <= 0 || this.stopped) return;
    for (const name of dependencyNames(packument)) {
      if (this.queued.has(name) || this.queue.length >= MAX_QUEUED || !this.wanted(name)) continue;
      this.queued.add(name);
      this.queue.push(name);
    }
    this.next();
  }

  /** Fetches nothing more (the registry stops: what waits to be stored must not grow after its last store). */
  stop(): void {
    this.stopped = true;
    for (const name of this.queue) this.queued.delete(name);
    this.queue.length = 0;
  }

  /** How many names are queued or being fetched. */
  get pending(): number {
    return this.queued.size;
  }

  private next(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      const name = this.queue.shift() as string;
      if (!this.wanted(name)) {
        this.queued.delete(name);
        continue;
      }
      this.running++;
      this.fetch(name)
        .catch(() => undefined)
        .finally(() => {
          this.running--;
          this.queued.delete(name);
          this.next();
        });
    }
  }
}
