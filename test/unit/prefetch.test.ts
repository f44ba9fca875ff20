import { UpstreamPackument } from '../../core/mirrored';
import { dependencyNames, Prefetcher } from '../../replication/prefetch';

/** An upstream packument whose latest version (2.0.0) has the fields `latest`. */
const packument = (latest: Record<string, unknown>, older: Record<string, unknown> = {}): UpstreamPackument => ({
  name: 'p',
  'dist-tags': { latest: '2.0.0' },
  versions: { '1.0.0': { name: 'p', version: '1.0.0', ...older }, '2.0.0': { name: 'p', version: '2.0.0', ...latest } } as unknown as UpstreamPackument['versions'],
});

describe('the dependencies pull-through fetches ahead', () => {
  it('are those of the latest version: dependencies, optional and peer ones, aliases by the name they stand for', () => {
    const names = dependencyNames(packument(
      {
        dependencies: { a: '^1.0.0', '@s/b': '2.x', alias: 'npm:@s/real@^3.0.0', bare: 'npm:plain' },
        optionalDependencies: { c: '*' },
        peerDependencies: { d: '>=1 <3', a: '^1.2.0' },
        devDependencies: { e: '^1.0.0' },
      },
      { dependencies: { old: '^1.0.0' } },
    ));
    expect(names.sort()).toEqual(['@s/b', '@s/real', 'a', 'c', 'd', 'plain']);
  });

  it('leave out what does not come from a registry, and names npm would refuse', () => {
    const names = dependencyNames(packument({
      dependencies: {
        git: 'git+https://example.com/x.git', gh: 'github:user/repo', short: 'user/repo', file: 'file:../x', link: 'link:../y',
        url: 'https://example.com/x.tgz', rel: './vendor/x', '.hidden': '1.0.0', 'Bad Name': '1.0.0', tagged: 'latest', range: '',
      },
    }));
    expect(names.sort()).toEqual(['range', 'tagged']);
  });

  it('are none without a latest version or with manifests of the wrong shape', () => {
    expect(dependencyNames({ name: 'p', versions: { '1.0.0': { dependencies: { a: '1' } } as never } })).toEqual([]);
    expect(dependencyNames(packument({ dependencies: ['a', 'b'] as never, optionalDependencies: 'c' as never }))).toEqual([]);
  });
});

describe('Prefetcher', () => {
  /** A fetch that finishes when told to, and the names it was asked for. */
  function gatedFetch() {
    const asked: string[] = [];
    const finish: (() => void)[] = [];
    return {
      asked,
      fetch: (name: string) => {
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
