import { oneEditAway, queryTerms, SearchIndex, searchEntry, searchTerms } from '../../core/search';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';

function pkg(name: string, extra: Partial<PackageDoc> = {}, versions = ['1.0.0']): PackageDoc {
  return { ...packageDoc(name, versions), ...extra };
}

const everyone = () => true;

function search(index: SearchIndex, text: string, options: { readable?: (name: string) => boolean; from?: number; size?: number } = {}) {
  const { parts, exactName, filters } = queryTerms(text);
  const { hits, total } = index.query(parts, exactName, options.readable || everyone, options.from || 0, options.size || 20, filters);
  return { names: hits.map((h) => h.entry.name), hits, total };
}

describe('search terms', () => {
  const doc = pkg('@acme/fast-json', { keywords: ['JSON', 'parser'], description: 'A fast JSON parser' });

  it('ranks each term by where it comes from: exact name, name part, keyword, description', () => {
    const ranks = searchTerms(searchEntry(doc)!);
    expect(ranks.get('@acme/fast-json')).toBe(0);
    expect(ranks.get('fast')).toBe(1);
    expect(ranks.get('json')).toBe(1);
    expect(ranks.get('parser')).toBe(2);
    expect(ranks.has('a')).toBe(false);
  });

  it('finds nothing in tombstones, foreign packages and other shapes', () => {
    expect(searchEntry(pkg('gone', { versions: {}, time: { unpublished: { time: 'x', versions: ['1.0.0'] } } as never }))).toBeNull();
    expect(searchEntry({ _id: '_design/app', views: {} } as unknown as PackageDoc)).toBeNull();
  });

  it('splits query words like package terms and keeps a scoped name whole', () => {
    expect(queryTerms('Fast-JSON  parser')).toEqual({ parts: ['fast', 'json', 'parser'], exactName: null });
    expect(queryTerms('@acme/fast-json')).toEqual({ parts: ['@acme/fast-json'], exactName: '@acme/fast-json' });
  });
});

describe('search index', () => {
  let index: SearchIndex;
  beforeEach(() => {
    index = new SearchIndex();
    index.apply('local', 'fast-json', '1-a', pkg('fast-json', { description: 'A fast JSON parser' }));
    index.apply('local', 'json-tools', '1-a', pkg('json-tools', { keywords: ['json'] }));
    index.apply('mirrored', 'slow-xml', '1-a', pkg('slow-xml', { description: 'Parses xml, not json', origin: 'https://up' }));
    index.apply('local', 'json', '1-a', pkg('json'));
  });

  it('puts the exact name first, then names starting with the word, name parts, keywords, descriptions', () => {
    index.apply('local', 'yaml-kit', '1-a', pkg('yaml-kit', { keywords: ['json'] }));
    expect(search(index, 'json').names).toEqual(['json', 'json-tools', 'fast-json', 'yaml-kit', 'slow-xml']);
    expect(search(index, 'json').hits[0].exact).toBe(true);
  });

  it('matches terms as prefixes, exact terms before prefixes', () => {
    index.apply('local', 'jsonata', '1-a', pkg('jsonata'));
    expect(search(index, 'jso').names).toEqual(['json', 'json-tools', 'jsonata', 'fast-json', 'slow-xml']);
    expect(search(index, 'json').names).toEqual(['json', 'json-tools', 'jsonata', 'fast-json', 'slow-xml']);
  });

  it('needs every word to match', () => {
    // slow-xml's "parses" is one edit from "parser": found too, after the exact match.
    expect(search(index, 'json parser').names).toEqual(['fast-json', 'slow-xml']);
    expect(search(index, 'json parsers').names).toEqual(['fast-json', 'slow-xml']);
    expect(search(index, 'json nothing').total).toBe(0);
  });

  it('follows updates, deletions and tombstones', () => {
    index.apply('local', 'fast-json', '2-b', pkg('fast-json', { description: 'Now about yaml' }));
    expect(search(index, 'parser').names).not.toContain('fast-json');
    expect(search(index, 'yaml').names).toEqual(['fast-json']);
    index.apply('local', 'json-tools', '2-b', pkg('json-tools', { versions: {}, time: { unpublished: { time: 'x', versions: [] } } as never }));
    index.apply('mirrored', 'slow-xml', '2-b', null);
    expect(search(index, 'json').names).toEqual(['json', 'fast-json']);
    expect(index.size).toBe(2);
  });

  it('ignores a report older than what it applied, so a late feed cannot undo a write', () => {
    index.apply('local', 'fast-json', '3-c', pkg('fast-json', { description: 'Version three' }));
    index.apply('local', 'fast-json', '2-b', pkg('fast-json', { description: 'Version two' }));
    expect(search(index, 'three').names).toEqual(['fast-json']);
    expect(search(index, 'two').names).toEqual([]);
  });

  it('lets a package published here hide the mirrored one of the same name, even as a tombstone', () => {
    index.apply('mirrored', 'shared', '1-a', pkg('shared', { description: 'upstream copy', origin: 'https://up' }));
    expect(search(index, 'upstream').names).toEqual(['shared']);
    index.apply('local', 'shared', '1-a', pkg('shared', { description: 'our own' }));
    expect(search(index, 'upstream').names).toEqual([]);
    expect(search(index, 'shared').hits[0].entry.description).toBe('our own');
    index.apply('local', 'shared', '2-b', pkg('shared', { versions: {}, time: { unpublished: { time: 'x', versions: [] } } as never }));
    expect(search(index, 'shared').total).toBe(0);
    index.apply('local', 'shared', '3-c', null);
    expect(search(index, 'upstream').names).toEqual(['shared']);
  });

  it('knows which names either database has a document of: tombstones count, deleted documents do not', () => {
    const fresh = new SearchIndex();
    fresh.apply('local', 'ours', '1-a', pkg('ours'));
    fresh.apply('mirrored', 'theirs', '1-a', pkg('theirs', { origin: 'https://up' }));
    fresh.apply('local', 'gone', '1-a', pkg('gone'));
    fresh.apply('local', 'gone', '2-b', pkg('gone', { versions: {}, time: { unpublished: { time: 'x', versions: [] } } as never }));
    fresh.apply('mirrored', 'removed', '1-a', pkg('removed'));
    fresh.apply('mirrored', 'removed', '2-b', null);
    expect(['ours', 'theirs', 'gone', 'removed', 'never'].filter((name) => fresh.holds(name))).toEqual(['ours', 'theirs', 'gone']);
    const copy = new SearchIndex();
    copy.restore(fresh.snapshot());
    expect(['ours', 'theirs', 'gone', 'removed', 'never'].filter((name) => copy.holds(name))).toEqual(['ours', 'theirs', 'gone']);
  });

  it('shows only what the caller may read, and counts only that', () => {
    const result = search(index, 'json', { readable: (name) => name !== 'fast-json' });
    expect(result.names).toEqual(['json', 'json-tools', 'slow-xml']);
    expect(result.total).toBe(3);
  });

  it('pages across ranks the same as one full sort by exact name, rank and name', () => {
    const mixed = new SearchIndex();
    const expected: { name: string; key: number }[] = [];
    for (let i = 0; i < 400; i++) {
      const name = 'lib-' + ((i * 37) % 400).toString(36);
      const where = i % 3;
      // The word in the name (a part), in the keywords, or in the description.
      const doc = where === 0 ? pkg(name + '-alpha') : where === 1 ? pkg(name, { keywords: ['alpha'] }) : pkg(name, { description: 'alpha' });
      mixed.apply('local', doc.name, '1-a', doc);
      expected.push({ name: doc.name, key: where === 0 ? 1 : where === 1 ? 2 : 3 });
    }
    mixed.apply('local', 'alpha', '1-a', pkg('alpha'));
    expected.push({ name: 'alpha', key: -1 });
    const order = expected.sort((a, b) => a.key - b.key || (a.name < b.name ? -1 : 1)).map((e) => e.name);
    for (const [from, size] of [[0, 20], [120, 30], [130, 20], [260, 250], [390, 20], [401, 5]]) {
      expect(search(mixed, 'alpha', { from, size }).names).toEqual(order.slice(from, from + size));
    }
    const readable = (name: string) => !name.endsWith('a');
    const visible = order.filter(readable);
    expect(search(mixed, 'alpha', { readable, from: 100, size: 50 })).toMatchObject({ names: visible.slice(100, 150), total: visible.length });
  });

  it('pages through many equal hits in name order, the same as a full sort', () => {
    const big = new SearchIndex();
    const names: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const name = 'pkg-' + ((i * 7919) % 3000).toString(36);
      names.push(name);
      big.apply('local', name, '1-a', pkg(name, { description: 'common words here' }));
    }
    names.sort();
    expect(search(big, 'common', { size: 20 }).names).toEqual(names.slice(0, 20));
    expect(search(big, 'common', { from: 1500, size: 25 }).names).toEqual(names.slice(1500, 1525));
    expect(search(big, 'common', { from: 2990, size: 25 }).names).toEqual(names.slice(2990));
    expect(search(big, 'common').total).toBe(3000);
  });
});

describe('search index: names', () => {
  const names = (index: SearchIndex, text: string, size = 50) => search(index, text, { size }).names;

  it('finds packages by the start of their whole name, scoped ones by their scope, the exact name first', () => {
    const index = new SearchIndex();
    for (const name of ['@acme/widgets', '@acme/gears', '@other/acme', 'acme', 'acmeish', 'not-acme']) index.apply('local', name, '1-a', pkg(name));
    expect(names(index, '@acme/')).toEqual(['@acme/gears', '@acme/widgets']);
    expect(names(index, '@acme/gears')).toEqual(['@acme/gears']);
    // `acme` is the whole name of one, the start of another's, and a part of the others' names.
    expect(names(index, 'acme')).toEqual(['acme', 'acmeish', '@acme/gears', '@acme/widgets', '@other/acme', 'not-acme']);
    // What starts with the word comes first; what is one edit away from it ("acme") after.
    expect(names(index, 'acmei')[0]).toBe('acmeish');
  });

  it('keeps the name order while names come and go between queries, one at a time and many at once', () => {
    const index = new SearchIndex();
    const present = new Set<string>();
    const add = (name: string, rev = '1-a') => {
      index.apply('local', name, rev, pkg(name, { description: 'shared' }));
      present.add(name);
    };
    const expected = () => [...present].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : a < b ? -1 : 1));
    for (let i = 0; i < 500; i++) add('bulk-' + ((i * 313) % 500).toString(36));
    expect(search(index, 'shared', { size: 250 }).names).toEqual(expected().slice(0, 250));
    // One by one, each followed by a query: at the start, in the middle, at the end, and in capitals.
    for (const name of ['aaa-first', 'bulk-7zz', 'zzz-last', 'Bulk-Shout', 'bulk-shout']) {
      add(name);
      expect(search(index, 'shared', { size: 250, from: 250 }).names).toEqual(expected().slice(250, 500));
      expect(search(index, 'shared', { size: 10 }).names).toEqual(expected().slice(0, 10));
    }
    // A name deleted and published again keeps its place.
    index.apply('local', 'bulk-1', '2-a', null);
    present.delete('bulk-1');
    expect(search(index, 'shared', { size: 250 }).names).toEqual(expected().slice(0, 250));
    add('bulk-1', '3-a');
    for (let i = 0; i < 200; i++) add('late-' + i);
    expect(search(index, 'shared', { size: 250, from: 400 }).names).toEqual(expected().slice(400, 650));
    expect(search(index, 'shared').total).toBe(present.size);
  });
});

/** A package whose latest version was published by `publisher`, maintained by `maintainers`, depending on `dependencies`. */
function made(name: string, options: { version?: string; publisher?: string; maintainers?: string[]; keywords?: string[]; description?: string; dependencies?: string[]; peer?: string[]; origin?: string } = {}): PackageDoc {
  const version = options.version || '1.0.0';
  const doc = pkg(name, { keywords: options.keywords, description: options.description, origin: options.origin }, [version]);
  const latest = doc.versions[version] as unknown as Record<string, unknown>;
  if (options.publisher) latest._npmUser = { name: options.publisher, email: options.publisher + '@example.com' };
  if (options.dependencies) latest.dependencies = Object.fromEntries(options.dependencies.map((d) => [d, '^1.0.0']));
  if (options.peer) latest.peerDependencies = Object.fromEntries(options.peer.map((d) => [d, '*']));
  if (options.maintainers) doc.maintainers = options.maintainers.map((m) => ({ name: m, email: m + '@example.com' }));
  return doc;
}

describe('search index: typos', () => {
  let index: SearchIndex;
  beforeEach(() => {
    index = new SearchIndex();
    for (const doc of [
      made('express', { description: 'Fast web framework' }),
      made('lodash', { description: 'Utility library' }),
      made('react', { description: 'User interfaces' }),
      made('reakt', { description: 'A different package' }),
      made('reakt-docs', { description: 'Docs' }),
      made('web-kit', { keywords: ['framework'] }),
    ]) index.apply('local', doc.name, '1-a', doc);
  });

  it('finds a word one edit away: a letter added, removed, replaced, or two swapped', () => {
    for (const typo of ['expresss', 'expres', 'exprss', 'exprezs', 'exrpess', 'xpress']) {
      expect(search(index, typo).names).toContain('express');
    }
    expect(search(index, 'lodahs').names).toEqual(['lodash']);
    // A keyword before a word of a description, as for exact matches.
    expect(search(index, 'framewrok').names).toEqual(['web-kit', 'express']);
  });

  it('ranks a match one edit away after every exact and prefix match', () => {
    // "reakt" is a whole name, the start of another, and one edit from "react".
    expect(search(index, 'reakt').names).toEqual(['reakt', 'reakt-docs', 'react']);
    expect(search(index, 'reakt').hits.map((h) => h.exact)).toEqual([true, false, false]);
  });

  it('finds nothing two edits away, and leaves short words exact', () => {
    expect(search(index, 'lodhas').total).toBe(0);
    expect(search(index, 'expresso').names).toEqual(['express']);
    expect(search(index, 'expressoo').total).toBe(0);
    // Three letters: "rec" is no typo of "react".
    expect(search(index, 'rec').total).toBe(0);
  });

  it('needs a typo only where the word has less than a page of matches', () => {
    const many = new SearchIndex();
    many.apply('local', 'other', '1-a', made('other', { description: 'patch' }));
    for (let i = 0; i < 3; i++) many.apply('local', 'pack-' + i, '1-a', made('pack-' + i, { description: 'match' }));
    // Three exact matches: "patch", one edit away, is found after them.
    expect(search(many, 'match', { size: 50 }).names).toEqual(['pack-0', 'pack-1', 'pack-2', 'other']);
    for (let i = 3; i < 30; i++) many.apply('local', 'pack-' + i, '1-a', made('pack-' + i, { description: 'match' }));
    // Thirty: a page of exact matches, no typo looked for.
    expect(search(many, 'match', { size: 50 }).total).toBe(30);
    expect(search(many, 'matcx', { size: 50 }).total).toBe(30);
  });

  it('spells every one-edit variant once, about 75 per letter', () => {
    const variants = oneEditAway('react');
    expect(new Set(variants).size).toBe(variants.length);
    expect(variants).not.toContain('react');
    for (const v of ['eact', 'raect', 'reacts', 'reach', 'r-eact']) expect(variants).toContain(v);
    expect(variants.length).toBeLessThan(75 * 5 + 40);
  });
});

describe('search index: qualifiers', () => {
  let index: SearchIndex;
  beforeEach(() => {
    index = new SearchIndex();
    for (const doc of [
      made('@acme/ui', { keywords: ['react', 'ui'], publisher: 'bob', maintainers: ['bob', 'carol'] }),
      made('@acme/beta', { version: '0.3.0', keywords: ['react'], publisher: 'carol', maintainers: ['carol'] }),
      made('ui-kit', { keywords: ['ui', 'vue'], publisher: 'dave', maintainers: ['dave', 'bob'], description: 'widgets for react' }),
      made('@other/ui', { keywords: ['UI'], publisher: 'erin', maintainers: ['erin'] }),
    ]) index.apply('local', doc.name, '1-a', doc);
  });

  it('reads npm\'s qualifiers out of the text', () => {
    expect(queryTerms('ui keywords:react,vue+ui,-old author:Bob scope:@acme not:unstable boost-exact:false')).toEqual({
      parts: ['ui'],
      exactName: null,
      filters: { keywords: { any: [['react'], ['vue', 'ui']], none: ['old'] }, author: 'bob', scope: 'acme', unstable: false },
    });
    expect(queryTerms('maintainer:carol is:unstable')).toEqual({ parts: [], exactName: null, filters: { maintainer: 'carol', unstable: true } });
  });

  it('keywords: any of a list, all of a group with +, none of those with -', () => {
    expect(search(index, 'keywords:react').names).toEqual(['@acme/beta', '@acme/ui']);
    expect(search(index, 'keywords:vue,react').names).toEqual(['@acme/beta', '@acme/ui', 'ui-kit']);
    expect(search(index, 'keywords:react+ui').names).toEqual(['@acme/ui']);
    expect(search(index, 'keywords:ui,-vue').names).toEqual(['@acme/ui', '@other/ui']);
    expect(search(index, 'ui keywords:vue').names).toEqual(['ui-kit']);
  });

  it('author: who published the latest version; maintainer: any maintainer', () => {
    expect(search(index, 'author:bob').names).toEqual(['@acme/ui']);
    expect(search(index, 'maintainer:bob').names).toEqual(['@acme/ui', 'ui-kit']);
    expect(search(index, 'react maintainer:bob').names).toEqual(['@acme/ui', 'ui-kit']);
    expect(search(index, 'maintainer:nobody').total).toBe(0);
  });

  it('scope:, with or without @; unstable versions (below 1.0.0) in or out', () => {
    expect(search(index, 'scope:acme').names).toEqual(['@acme/beta', '@acme/ui']);
    expect(search(index, 'scope:@acme react').names).toEqual(['@acme/beta', '@acme/ui']);
    expect(search(index, 'scope:acme not:unstable').names).toEqual(['@acme/ui']);
    expect(search(index, 'scope:acme is:unstable').names).toEqual(['@acme/beta']);
  });

  it('qualifiers alone still show only what the caller may read', () => {
    const result = search(index, 'keywords:ui', { readable: (name) => !name.startsWith('@acme/') });
    expect(result).toMatchObject({ names: ['@other/ui', 'ui-kit'], total: 2 });
  });

  it('boost-exact:false does not put the exact name first', () => {
    expect(search(index, 'ui-kit').names[0]).toBe('ui-kit');
    expect(search(index, 'ui-kit boost-exact:false').hits.every((h) => !h.exact)).toBe(true);
  });
});

describe('search index: dependents', () => {
  it('lists the packages whose latest version depends on a name, in name order, paged', () => {
    const index = new SearchIndex();
    index.apply('local', 'app', '1-a', made('app', { dependencies: ['lib', 'util'] }));
    index.apply('local', 'tool', '1-a', made('tool', { dependencies: ['lib'] }));
    index.apply('mirrored', 'plugin', '1-a', made('plugin', { peer: ['lib'], origin: 'https://up' }));
    expect(index.dependentsOf('lib', null, 0, 20)).toMatchObject({ total: 3, packages: [{ name: 'app' }, { name: 'plugin' }, { name: 'tool' }] });
    expect(index.dependentsOf('lib', null, 1, 1).packages.map((p) => p.name)).toEqual(['plugin']);
    expect(index.dependentsOf('util', null, 0, 20).packages.map((p) => p.name)).toEqual(['app']);
    expect(index.dependentsOf('nothing', null, 0, 20)).toEqual({ packages: [], total: 0 });
  });

  it('follows new versions, deletions, and a local package hiding the mirrored one', () => {
    const index = new SearchIndex();
    index.apply('local', 'app', '1-a', made('app', { dependencies: ['lib'] }));
    index.apply('local', 'app', '2-a', made('app', { version: '2.0.0', dependencies: ['other'] }));
    expect(index.dependentsOf('lib', null, 0, 20).total).toBe(0);
    expect(index.dependentsOf('other', null, 0, 20).total).toBe(1);
    index.apply('mirrored', 'shared', '1-a', made('shared', { dependencies: ['lib'], origin: 'https://up' }));
    index.apply('local', 'shared', '1-a', made('shared', { dependencies: ['mine'] }));
    expect(index.dependentsOf('lib', null, 0, 20).total).toBe(0);
    expect(index.dependentsOf('mine', null, 0, 20).total).toBe(1);
    index.apply('local', 'shared', '2-b', null);
    expect(index.dependentsOf('lib', null, 0, 20).packages.map((p) => p.name)).toEqual(['shared']);
    index.apply('local', 'app', '3-a', null);
    expect(index.dependentsOf('other', null, 0, 20).total).toBe(0);
  });

  it('shows only the dependents the caller may read, and counts only those', () => {
    const index = new SearchIndex();
    for (const name of ['@secret/a', 'open-b', '@secret/c']) index.apply('local', name, '1-a', made(name, { dependencies: ['lib'] }));
    expect(index.dependentsOf('lib', (name) => !name.startsWith('@secret/'), 0, 20)).toMatchObject({ total: 1, packages: [{ name: 'open-b' }] });
  });

  it('keeps dependents, people and typos across a snapshot', () => {
    const index = new SearchIndex();
    index.apply('local', 'app', '1-a', made('app', { dependencies: ['lib'], maintainers: ['bob'] }));
    index.apply('mirrored', 'app', '1-a', made('app', { dependencies: ['old'], origin: 'https://up' }));
    const copy = new SearchIndex();
    copy.restore(JSON.parse(JSON.stringify(index.snapshot())));
    expect(copy.dependentsOf('lib', null, 0, 20).total).toBe(1);
    expect(search(copy, 'maintainer:bob').names).toEqual(['app']);
    copy.apply('local', 'app', '2-a', null);
    expect(copy.dependentsOf('old', null, 0, 20).total).toBe(1);
    expect(copy.dependentsOf('lib', null, 0, 20).total).toBe(0);
  });
});

describe('search index: snapshot', () => {
  const words = ['fast', 'json', 'parser', 'tiny', 'http', 'client', 'server', 'stream', 'colour', 'logger'];
  /** 300 packages of every kind: scoped, below 1.0.0, with keywords, people, dependencies, published here and mirrored, a few deleted or replaced. */
  function filled(): SearchIndex {
    const index = new SearchIndex();
    for (let i = 0; i < 300; i++) {
      const w = (k: number) => words[(i * 7 + k * 3) % words.length];
      const name = (i % 5 === 0 ? '@scope' + (i % 3) + '/' : '') + w(0) + '-' + w(1) + '-' + i;
      const doc = made(name, {
        version: i % 4 === 0 ? '0.' + i + '.0' : '1.' + i + '.0', keywords: [w(2), w(3).toUpperCase()], description: 'A ' + w(4) + ' ' + w(5) + ' library',
        publisher: 'pub' + (i % 7), maintainers: ['m' + (i % 4), 'm' + (i % 9)], dependencies: i > 10 ? [w(0) + '-' + w(1) + '-' + (i % 10), 'lib' + (i % 3)] : undefined,
        origin: i % 6 === 0 ? 'https://up' : undefined,
      });
      index.apply(i % 6 === 0 ? 'mirrored' : 'local', name, '1-a', doc);
      if (i % 11 === 0) index.apply('local', name, '2-b', made(name, { description: 'replaced ' + w(6), keywords: [w(7)] }));
      if (i % 13 === 0) index.apply(i % 6 === 0 ? 'mirrored' : 'local', name, '3-c', null);
    }
    return index;
  }
  const queries = ['fast', 'json parser', 'htt', 'clinet', 'colour-logger-17', '@scope1/', 'keywords:tiny', 'keywords:json,-http', 'author:pub3', 'maintainer:m2 json', 'scope:scope2', 'is:unstable stream', 'not:unstable', 'replaced', 'library'];
  const answers = (index: SearchIndex) =>
    queries.map((q) => ({ q, ...search(index, q, { size: 50 }) })).map(({ q, hits, total }) => ({ q, total, hits: hits.map((h) => [h.entry, h.rank, h.exact]) }));

  it('reads back into an index that answers every query, ranking and summary as the one it was written from, and goes on changing the same', () => {
    const index = filled();
    const copy = new SearchIndex();
    copy.restore(JSON.parse(JSON.stringify(index.snapshot())));
    expect(copy.size).toBe(index.size);
    expect(answers(index).filter((a) => a.total > 0).length).toBeGreaterThanOrEqual(queries.length - 1);
    expect(answers(copy)).toEqual(answers(index));
    for (const dep of ['lib0', 'lib2', 'fast-json-3']) expect(copy.dependentsOf(dep, null, 0, 50)).toEqual(index.dependentsOf(dep, null, 0, 50));
    for (const name of ['fast-json-0', 'json-http-1', 'never']) expect(copy.holds(name)).toBe(index.holds(name));
    // Changes after it: the same in both.
    for (const target of [index, copy]) {
      target.apply('local', 'json-http-1', '9-z', made('json-http-1', { description: 'now a stream thing', maintainers: ['m2'] }));
      target.apply('local', 'brand-new', '1-a', made('brand-new', { keywords: ['tiny'], dependencies: ['lib0'] }));
      target.apply('local', 'tiny-client-2', '9-z', null);
    }
    expect(answers(copy)).toEqual(answers(index));
    expect(copy.dependentsOf('lib0', null, 0, 50)).toEqual(index.dependentsOf('lib0', null, 0, 50));
  });

  it('refuses a snapshot cut short or changed, rather than reading part of it', () => {
    const lines = filled().snapshot();
    expect(() => new SearchIndex().restore(lines.slice(0, -1))).toThrow(/snapshot is unreadable \(it ends early\)/);
    const wrongPosting = lines.map((line) => (line.startsWith('["json",') ? '["json",[999999]]' : line));
    expect(() => new SearchIndex().restore(wrongPosting)).toThrow(/snapshot is unreadable \(postings\)/);
  });
});
