/**
 * The one place where a package name is routed to an upstream (`UPSTREAMS`, `UPSTREAM_REGISTRY`;
 * config/upstreams.ts): `upstreamFor(name)` is the route of a name, with its client (and token), its
 * mode, its time limit and its mirror. A name in a private scope (`REPLICATION_PRIVATE_SCOPES`), or
 * one no pattern matches, has none, and is never asked of any upstream.
 *
 * A mirrored copy is served only while its name is routed to the upstream it came from (`serves`):
 * a copy whose `origin` is another URL (the configuration routed the name elsewhere since, or the
 * upstream moved) is treated as absent, so the name goes to its upstream now (pull-through replaces
 * the copy whole), and is never refreshed from the wrong one. Copies of an origin that is not a URL
 * (brought by the native CouchDB replication, `REPLICATION_COUCHDB`) are served as they are, and so
 * is the whole mirror database when no upstream is configured (an offline copy).
 */
import { Config, routeOf, UpstreamConfig, UpstreamMode } from '../config';
import { packageNameProblem } from '../core/names';
import { inPrivateScope } from '../core/provenance';
import { PackageDoc } from '../core/types';
import type { NpmFollower } from './feed/follower';
import type { Mirror } from './mirror';
import { UpstreamRegistry } from './upstream';

/** One upstream and what runs for it. */
export class UpstreamRoute {
  /** The client: its URL, time limit and token, and what it has seen (`stats`). */
  readonly registry: UpstreamRegistry;
  /** Pull-through and storage of its packages (every mode: its feed mirrors in every mode), once replication started. */
  mirror?: Mirror;
  /** Its change-feed follower, when it has a feed. */
  follower?: NpmFollower;

  constructor(
    readonly config: UpstreamConfig,
    settings: Pick<Config, 'outbound' | 'upstreamMaxPackumentBytes' | 'upstreamMaxTarballBytes'>,
  ) {
    this.registry = UpstreamRegistry.of(config, settings);
  }

  get name(): string {
    return this.config.name;
  }

  get url(): string {
    return this.config.url;
  }

  get mode(): UpstreamMode {
    return this.config.mode;
  }

  get patterns(): string[] {
    return this.config.packages;
  }
}

export class UpstreamRoutes {
  readonly all: UpstreamRoute[];
  private readonly privateScopes: string[];
  private readonly configs: UpstreamConfig[];

  constructor(config: Pick<Config, 'upstreams' | 'outbound' | 'upstreamMaxPackumentBytes' | 'upstreamMaxTarballBytes' | 'replication'>) {
    this.all = config.upstreams.map((upstream) => new UpstreamRoute(upstream, config));
    this.privateScopes = config.replication.privateScopes;
    this.configs = config.upstreams;
  }

  /** Whether any upstream is configured. */
  get any(): boolean {
    return this.all.length > 0;
  }

  /** Whether `name` is in a private scope: never asked of any upstream. */
  isPrivate(name: string): boolean {
    return inPrivateScope(name, this.privateScopes);
  }

  /**
   * The route of `name`: the first upstream whose pattern matches it; null for a private scope, a name
   * no pattern matches, or one that is not a package name (`@scope/../x`, `%40scope%2Fx`: an upstream
   * that normalizes or decodes it again might read another name than the one routed).
   */
  upstreamFor(name: string): UpstreamRoute | null {
    if (this.isPrivate(name) || packageNameProblem(name, false)) return null;
    const found = routeOf(this.configs, name);
    return found ? this.all.find((route) => route.config === found) || null : null;
  }

  /** The route named `name`. */
  named(name: string): UpstreamRoute | undefined {
    return this.all.find((route) => route.name === name);
  }

  /** The mirror of the upstream `name` is routed to, when it has one. */
  mirrorFor(name: string): Mirror | undefined {
    return this.upstreamFor(name)?.mirror;
  }

  /** The upstream of every name (`**`), the last resort for what is not a package (the signing keys of `npm audit signatures`). */
  get catchAll(): UpstreamRoute | undefined {
    return this.all.find((route) => route.patterns.includes('**'));
  }

  /** Why `name` is not asked of any upstream, in words for the 404; null when it has a route. */
  noRouteMessage(name: string): string | null {
    if (this.isPrivate(name)) return 'Package "' + name + '" is not in this registry; its scope is private here, so it is never fetched from an upstream.';
    if (this.upstreamFor(name)) return null;
    if (packageNameProblem(name, false)) return 'Package "' + name + '" is not here, and it is never asked of an upstream: ' + packageNameProblem(name, false) + '.';
    return 'Package "' + name + '" is not here, and no upstream is configured for it (no pattern of UPSTREAMS matches the name).';
  }

  /**
   * Whether the mirrored copy `doc` is served: always without upstreams and for an origin that is not
   * a URL; else only when its name is routed to the upstream it came from.
   */
  serves(doc: PackageDoc): boolean {
    if (!this.any || typeof doc.origin !== 'string' || !/^https?:\/\//i.test(doc.origin)) return true;
    const route = this.upstreamFor(doc.name || String(doc._id));
    return !!route && route.url === doc.origin;
  }
}
