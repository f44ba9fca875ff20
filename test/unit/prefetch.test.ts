import { UpstreamPackument } from '../../core/mirrored';
import { Dependency, dependenciesOf, Prefetcher, versionFor } from '../../replication/prefetch';

/** An upstream packument whose latest version (2.0.0) has the fields `latest`. */
const packument = (latest: Record<string, unknown>, older: Record<string, unknown> = {}): UpstreamPackument => ({
  name: 'p',
  'dist-tags': { latest: '2.0.0' },
  versions: { '1.0.0': { name: 'p', version: '1.0.0', ...older }, '2.0.0': { name: 'p', version: '2.0.0', ...latest } } as unknown as UpstreamPackument['versions'],
});

/** The names of `dependenciesOf`, sorted. */
const names = (p: UpstreamPackument): string[] => dependenciesOf(p).map((d) => d.name).sort();

describe('the dependencies pull-through fetches ahead', () => {
  it('are those of the latest version: dependencies, optional and peer ones, aliases by the name they stand for', () => {
    const found = dependenciesOf(packument(
      {
        dependencies: { a: '^1.0.0', '@s/b': '2.x', alias: 'npm:@s/real@^3.0.0', bare: 'npm:plain', both: '^1.0.0' },
        optionalDependencies: { c: '*', both: '^2.0.0' },
        peerDependencies: { d: '>=1 <3', a: '^1.2.0', maybe: '1' },
        peerDependenciesMeta: { maybe: { optional: true } },
        devDependencies: { e: '^1.0.0' },
      },
      { dependencies: { old: '^1.0.0' } },
    ));
    expect(found.sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: '@s/b', spec: '2.x', optional: false },
      { name: '@s/real', spec: '^3.0.0', optional: false },
      { name: 'a', spec: '^1.0.0', optional: false },
      { name: 'both', spec: '^2.0.0', optional: true },
      { name: 'c', spec: '*', optional: true },
      { name: 'd', spec: '>=1 <3', optional: false },
      { name: 'maybe', spec: '1', optional: true },
      { name: 'plain', spec: '', optional: false },
    ]);
  });

  it('leave out what does not come from a registry, and names npm would refuse', () => {
    expect(names(packument({
      dependencies: {
        git: 'git+https://example.com/x.git', gh: 'github:user/repo', short: 'user/repo', file: 'file:../x', link: 'link:../y',
        url: 'https://example.com/x.tgz', rel: './vendor/x', '.hidden': '1.0.0', 'Bad Name': '1.0.0', tagged: 'latest', range: '',
      },
    }))).toEqual(['range', 'tagged']);
  });

  it('are none without a latest version or with manifests of the wrong shape', () => {
    expect(names({ name: 'p', versions: { '1.0.0': { dependencies: { a: '1' } } as never } })).toEqual([]);
    expect(names(packument({ dependencies: ['a', 'b'] as never, optionalDependencies: 'c' as never }))).toEqual([]);
  });
});

describe('the version npm picks for a dependency (its tarball is fetched ahead)', () => {
  const versions = (...list: string[]): UpstreamPackument['versions'] =>
    Object.fromEntries(list.map((v) => [v, { name: 'p', version: v, ...(v.endsWith('.9') ? { deprecated: 'do not use' } : {}) }])) as never;
  const p: Pick<UpstreamPackument, 'dist-tags' | 'versions'> = {
    'dist-tags': { latest: '1.2.0', next: '2.0.0-rc.1' },
    versions: versions('1.0.0', '1.2.0', '1.3.0', '1.4.9', '2.0.0-rc.1', '0.9.0'),
  };

  it('is latest when the range takes it, even with higher versions in the range', () => {
    expect(versionFor(p, '^1.0.0')).toBe('1.2.0');
    expect(versionFor(p, '')).toBe('1.2.0');
    expect(versionFor(p, '*')).toBe('1.2.0');
  });

  it('is the highest in the range otherwise, one not deprecated when there is one', () => {
    expect(versionFor(p, '>=1.3.0 <2')).toBe('1.3.0');
    expect(versionFor(p, '~1.4.0')).toBe('1.4.9');
    expect(versionFor(p, '0.x')).toBe('0.9.0');
    expect(versionFor(p, '1.0.0')).toBe('1.0.0');
  });

  it('is a tag\'s version, and none for a range nothing satisfies or a spec that is not one', () => {
    expect(versionFor(p, 'next')).toBe('2.0.0-rc.1');
    expect(versionFor(p, '^3.0.0')).toBeNull();
    expect(versionFor(p, 'nonsense tag')).toBeNull();
    expect(versionFor({ versions: {} }, '^1.0.0')).toBeNull();
    expect(versionFor({ 'dist-tags': { odd: 'constructor' }, versions: {} }, 'odd')).toBeNull();
    expect(versionFor({ 'dist-tags': {}, versions: {} }, 'constructor')).toBeNull();
  });
});

describe('Prefetcher', () => {
  /** A fetch that finishes when told to, and the names it was asked for. */
  function gatedFetch() {
    const asked: string[] = [];
    const finish: (() => void)[] = [];
    return {
      asked,
      fetch: ({ name }: Dependency) => {
        asked.push(name);
        return new Promise<void>((resolve) => finish.push(resolve));
      },
      finishOne: async () => {
        finish.shift()?.();
        await new Promise((r) => setImmediate(r));
      },
    };
  }

  it('fetches at most `limit` at once, each name once, and only names still wanted when their turn comes', async () => {
    const gate = gatedFetch();
    const unwanted = new Set(['skip']);
    const prefetcher = new Prefetcher(2, (name) => !unwanted.has(name), gate.fetch);
    prefetcher.dependenciesOf(packument({ dependencies: { a: '1', b: '1', c: '1', skip: '1', late: '1' } }));
    prefetcher.dependenciesOf(packument({ dependencies: { a: '1', b: '1' } }));
    expect(gate.asked).toEqual(['a', 'b']);
    unwanted.add('late');
    await gate.finishOne();
    expect(gate.asked).toEqual(['a', 'b', 'c']);
    await gate.finishOne();
    await gate.finishOne();
    await gate.finishOne();
    expect(gate.asked).toEqual(['a', 'b', 'c']);
    expect(prefetcher.pending).toBe(0);
  });

  it('fetches nothing more once stopped', async () => {
    const gate = gatedFetch();
    const prefetcher = new Prefetcher(1, () => true, gate.fetch);
    prefetcher.dependenciesOf(packument({ dependencies: { a: '1', b: '1' } }));
    prefetcher.stop();
    prefetcher.dependenciesOf(packument({ dependencies: { c: '1' } }));
    await gate.finishOne();
    expect(gate.asked).toEqual(['a']);
    expect(prefetcher.pending).toBe(0);
  });

  it('does nothing with a limit of 0', () => {
    const gate = gatedFetch();
    new Prefetcher(0, () => true, gate.fetch).dependenciesOf(packument({ dependencies: { a: '1' } }));
    expect(gate.asked).toEqual([]);
  });
});

describe('dependenciesOf the versions a range picks', () => {
  const child: UpstreamPackument = {
    name: 'child',
    'dist-tags': { latest: '2.0.0' },
    versions: {
      '1.0.0': { name: 'child', version: '1.0.0', dependencies: { old: '^1.0.0', both: '^1.0.0' } } as never,
      '2.0.0': { name: 'child', version: '2.0.0', dependencies: { fresh: '^1.0.0', both: '^2.0.0' } } as never,
    },
  };

  it('reads the latest version by default, and the versions given otherwise; a name both depend on keeps the first version\'s range', () => {
    expect(dependenciesOf(child).map((d) => d.name).sort()).toEqual(['both', 'fresh']);
    expect(dependenciesOf(child, ['1.0.0']).map((d) => d.name).sort()).toEqual(['both', 'old']);
    expect(dependenciesOf(child, ['1.0.0', '2.0.0'])).toEqual([
      { name: 'old', spec: '^1.0.0', optional: false },
      { name: 'both', spec: '^1.0.0', optional: false },
      { name: 'fresh', spec: '^1.0.0', optional: false },
    ]);
    expect(dependenciesOf(child, ['9.9.9'])).toEqual([]);
  });
});
