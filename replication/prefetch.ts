/**
 * Pull-through ahead of the client: once a package has come from the upstream, the packuments its
 * latest version depends on are fetched too, a few at a time, while the client is still reading the
 * first one. npm asks for a packument, reads it, then asks for its dependencies': each of those is
 * then answered from memory instead of costing an upstream round trip and a database read on the
 * client's path. Only a package a client read is expanded (the mirror decides when), so prefetching
 * stays one level ahead of clients. Names the registry may not take from the upstream, or that it
 * has, are never asked. The mirror may also fetch the tarball npm will ask for next: the version of
 * each dependency that its parent's range picks (`versionFor`).
 */
import semver from 'semver';
import { UpstreamPackument } from '../core/mirrored';
import { packageNameProblem } from '../core/names';

/** Names waiting to be prefetched at most: a package with more dependencies than this gets the first ones. */
const MAX_QUEUED = 1_000;

/** The specs npm resolves against a registry: ranges, versions, tags, and `npm:` aliases. */
const NOT_FROM_REGISTRY = /^(?:[a-z+]+:|\.{0,2}\/|~\/|[^@/\s]+\/[^/\s]+$)/i;

/** A package the latest version of a pulled package depends on. */
export interface Dependency {
  /** Its name at the registry (an alias `npm:x@1` is `x`). */
  name: string;
  /** The range, version or tag asked for (an alias's part after its name); '' asks for any. */
  spec: string;
  /** npm may leave it out: an optional dependency (skipped where its platform does not fit) or an optional peer. */
  optional: boolean;
}

/**
 * The packages `versions` of `packument` depend on (by default its latest version; a package
 * fetched for a dependent: the versions its dependents' ranges pick, as npm will), reading
 * `dependencies`, `optionalDependencies` and `peerDependencies`, all of which npm reads, as the
 * registry names them, each once: an alias
 * `npm:x@1` is `x`, and specs that do not come from a registry (git, URLs, files, `user/repo`) are
 * left out. As in npm, an optional dependency overrides a plain one of the same name, and a peer
 * adds only names the others do not have.
 */
export function dependenciesOf(packument: UpstreamPackument, versions?: string[]): Dependency[] {
  const latest = packument['dist-tags'] && packument['dist-tags'].latest;
  const found = new Map<string, Dependency>();
  for (const version of versions && versions.length ? versions : typeof latest === 'string' ? [latest] : []) {
    const manifest = packument.versions && Object.prototype.hasOwnProperty.call(packument.versions, version) ? packument.versions[version] : undefined;
    if (!manifest || typeof manifest !== 'object') continue;
    // A name two versions depend on keeps the first version's range.
    for (const dependency of dependenciesOfVersion(manifest as Record<string, unknown>)) if (!found.has(dependency.name)) found.set(dependency.name, dependency);
  }
  return [...found.values()];
}

/** What one version's manifest (`fields`) depends on (see `dependenciesOf`). */
function dependenciesOfVersion(fields: Record<string, unknown>): Dependency[] {
  const peersMeta = fields.peerDependenciesMeta && typeof fields.peerDependenciesMeta === 'object' ? (fields.peerDependenciesMeta as Record<string, { optional?: unknown }>) : {};
  const found = new Map<string, Dependency>();
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'] as const) {
    const specs = fields[field];
    if (!specs || typeof specs !== 'object' || Array.isArray(specs)) continue;
    for (const [key, value] of Object.entries(specs as Record<string, unknown>)) {
      let spec = typeof value === 'string' ? value.trim() : '';
      let name = key;
      if (spec.startsWith('npm:')) {
        const target = spec.slice(4);
        const at = target.indexOf('@', 1);
        [name, spec] = at === -1 ? [target, ''] : [target.slice(0, at), target.slice(at + 1)];
      } else if (NOT_FROM_REGISTRY.test(spec)) {
        continue;
      }
      if (packageNameProblem(name, false) !== null || (field === 'peerDependencies' && found.has(name))) continue;
      const optional = field === 'optionalDependencies' || (field === 'peerDependencies' && !!peersMeta[key] && peersMeta[key].optional === true);
      found.set(name, { name, spec, optional });
    }
  }
  return [...found.values()];
}

/** What `versionFor` reads of a packument: its tags and its versions. */
type Versions = Pick<UpstreamPackument, 'dist-tags' | 'versions'>;

/**
 * The version npm picks for `spec` from `packument`, or null when none fits (or `spec` is not a
 * range, version or tag): a tag's version; else `latest` when it satisfies the range; else the
 * highest version that does, one not deprecated if there is such.
 */
export function versionFor(packument: Versions, spec: string): string | null {
  const tags = packument['dist-tags'] || {};
  const versions = packument.versions || {};
  // Only their own keys: an upstream's tag named `constructor` finds nothing.
  const has = (record: object, key: string) => Object.prototype.hasOwnProperty.call(record, key);
  const wanted = spec === '' || spec === '*' ? 'latest' : spec;
  const tagged = has(tags, wanted) ? tags[wanted] : undefined;
  if (typeof tagged === 'string' && has(versions, tagged)) return tagged;
  const range = semver.validRange(wanted, { loose: true });
  if (range === null) return null;
  const latest = tags.latest;
  if (has(tags, 'latest') && typeof latest === 'string' && has(versions, latest) && semver.satisfies(latest, range, { loose: true })) return latest;
  const all = Object.keys(versions);
  const current = all.filter((version) => !(versions[version] as { deprecated?: unknown } | null)?.deprecated);
  return semver.maxSatisfying(current, range, { loose: true }) || semver.maxSatisfying(all, range, { loose: true });
}

/** Fetches the dependencies of pulled packages ahead of the client, at most `limit` at once. */
export class Prefetcher {
  private readonly queue: Dependency[] = [];
  private readonly queued = new Set<string>();
  private running = 0;
  private stopped = false;

  constructor(
    /** How many prefetches run at once; 0 turns prefetching off. */
    private readonly limit: number,
    /** Whether the package `name` is worth fetching now (asked once when queued and again when its turn comes). */
    private readonly wanted: (name: string) => boolean,
    /** Fetches a dependency as pull-through does; failures are the fetch's to report. */
    private readonly fetch: (dependency: Dependency) => Promise<unknown>,
  ) {}

  /** Queues the packages `versions` of `packument` (its latest by default) depend on; returns them all (queued or not). */
  dependenciesOf(packument: UpstreamPackument, versions?: string[]): Dependency[] {
    if (this.limit <= 0 || this.stopped) return [];
    const dependencies = dependenciesOf(packument, versions);
    for (const dependency of dependencies) {
      if (this.queued.has(dependency.name) || this.queue.length >= MAX_QUEUED || !this.wanted(dependency.name)) continue;
      this.queued.add(dependency.name);
      this.queue.push(dependency);
    }
    this.next();
    return dependencies;
  }

  /** Fetches nothing more (the registry stops: what waits to be stored must not grow after its last store). */
  stop(): void {
    this.stopped = true;
    for (const dependency of this.queue) this.queued.delete(dependency.name);
    this.queue.length = 0;
  }

  /** How many names are queued or being fetched. */
  get pending(): number {
    return this.queued.size;
  }

  private next(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      const dependency = this.queue.shift() as Dependency;
      if (!this.wanted(dependency.name)) {
        this.queued.delete(dependency.name);
        continue;
      }
      this.running++;
      this.fetch(dependency)
        .catch(() => undefined)
        .finally(() => {
          this.running--;
          this.queued.delete(dependency.name);
          this.next();
        });
    }
  }
}
