/**
 * Search qualifiers that cost too much (issue 27's hostile test): one `keywords:` qualifier that
 * names a popular keyword thousands of times (`js+js+…`, `js,js,…`, `-js,-js,…`, about 15 KB, what a
 * URL can carry) made the index read the keyword's packages once per repeat, blocking the gateway for
 * seconds per request (100,000 packages, 10,000 with the keyword: 34 s for `js+js+…`). Repeats now
 * count once and a query names at most 16 keywords.
 */
import { queryTerms, SearchIndex } from '../../core/search';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';

const PACKAGES = 20_000;
let index: SearchIndex;

beforeAll(() => {
  index = new SearchIndex();
  for (let i = 0; i < PACKAGES; i++) {
    const name = 'pkg-' + i;
    const keywords = i % 4 === 0 ? ['js', 'util'] : ['other' + (i % 500)];
    const doc = packageDoc(name, ['1.0.0']) as PackageDoc;
    doc.versions['1.0.0'] = { ...doc.versions['1.0.0'], keywords } as never;
    index.apply('local', name, '1-a', { ...doc, keywords } as PackageDoc);
  }
  index.settle();
});

function timed(text: string): { ms: number; total: number } {
  const { parts, exactName, filters } = queryTerms(text);
  const started = process.hrtime.bigint();
  const { total } = index.query(parts, exactName, null, 0, 20, filters);
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, total };
}

describe('keywords: qualifiers crafted to take long', () => {
  it('the plain query finds the keyword\'s packages', () => {
    expect(timed('keywords:js').total).toBe(PACKAGES / 4);
  });

  it.each([
    ['one keyword repeated in an all-of group', 'keywords:' + 'js+'.repeat(5000), PACKAGES / 4],
    ['one keyword repeated as alternatives', 'keywords:' + 'js,'.repeat(5000), PACKAGES / 4],
    ['one keyword repeated as exclusions', 'keywords:' + '-js,'.repeat(3700), 0],
    ['two keywords repeated, with a word', 'keywords:' + 'js+util,'.repeat(1800) + ' pkg', PACKAGES / 4],
  ])('%s: answered as the plain query, in well under a second', (_what, text, total) => {
    const answer = timed(text);
    expect(answer.total).toBe(total);
    expect(answer.ms).toBeLessThan(300);
  });

  it('repeats count once, and a query names at most 16 keywords', () => {
    expect(queryTerms('keywords:a+a+b,a+b,b+a,-c,-c,c').filters!.keywords).toEqual({ any: [['a', 'b'], ['c']], none: ['c'] });
    const many = queryTerms('keywords:' + Array.from({ length: 40 }, (_, i) => 'k' + i).join(',')).filters!.keywords!;
    expect(many.any.length + many.none.length).toBe(16);
  });
});
