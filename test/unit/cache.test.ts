import { mkdtempSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { LocalAbsence, PackumentCache, UNKNOWN_UPSTREAM_MS } from '../../gateway/cache';
import { changedElsewhere } from '../../gateway/context';
import { MEMORY_TARBALL_BYTES, TarballCache } from '../../gateway/tarball-cache';
import { ServedCopies } from '../../gateway/served-copies';
import { NO_POLICY } from '../../core/policy';

const entry = (rev: string, size = 10) => ({ rev, full: Buffer.alloc(size), abbreviated: Buffer.alloc(size) });

describe('packument cache', () => {
  it('is off until the change feed is followed, and forgets everything when it stops', () => {
    const cache = new PackumentCache(1000);
    cache.set('a', cache.generation('a'), entry('1-a'));
    expect(cache.get('a')).toBeUndefined();
    cache.setLive(true);
    cache.set('a', cache.generation('a'), entry('1-a'));
    expect(cache.get('a')?.rev).toBe('1-a');
    cache.setLive(false);
    cache.setLive(true);
    expect(cache.get('a')).toBeUndefined();
  });

  it('does not store a read that a change overtook', () => {
    const cache = new PackumentCache(1000);
    cache.setLive(true);
    const generation = cache.generation('a');
    cache.invalidate('a');
    cache.set('a', generation, entry('1-old'));
    expect(cache.get('a')).toBeUndefined();
  });

  it('remembers a name the upstream did not have either for UNKNOWN_UPSTREAM_MS, until a change of that name, and only while the feed is followed', () => {
    const cache = new PackumentCache(1000);
    cache.setUnknownUpstream('ghost', cache.generation('ghost'));
    expect(cache.isUnknownUpstream('ghost')).toBe(false);
    cache.setLive(true);
    const now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockReturnValue(now);
    try {
      cache.setUnknownUpstream('ghost', cache.generation('ghost'));
      expect(cache.isUnknownUpstream('ghost')).toBe(true);
      clock.mockReturnValue(now + UNKNOWN_UPSTREAM_MS - 1);
      expect(cache.isUnknownUpstream('ghost')).toBe(true);
      // Asked again after that: a package published upstream meanwhile is found.
      clock.mockReturnValue(now + UNKNOWN_UPSTREAM_MS);
      expect(cache.isUnknownUpstream('ghost')).toBe(false);
      // A change of the name (a publish here, the package arriving in the mirror) ends it at once.
      cache.setUnknownUpstream('ghost', cache.generation('ghost'));
      expect(cache.isUnknownUpstream('ghost')).toBe(true);
      changedElsewhere({ cache, tarballs: new TarballCache(mkdtempSync(join(tmpdir(), 'unknown-')), 0), ownWrites: new Map() }, 'ghost', '1-a');
      expect(cache.isUnknownUpstream('ghost')).toBe(false);
      // A read that a change overtook does not remember the name.
      const generation = cache.generation('ghost');
      cache.invalidate('ghost');
      cache.setUnknownUpstream('ghost', generation);
      expect(cache.isUnknownUpstream('ghost')).toBe(false);
    } finally {
      clock.mockRestore();
    }
  });

  it('remembers names in neither database until a change of that name, and only while the feed is followed', () => {
    const cache = new PackumentCache(1000);
    cache.setAbsent('nobody', cache.generation('nobody'));
    expect(cache.isAbsent('nobody')).toBe(false);
    cache.setLive(true);
    cache.setAbsent('nobody', cache.generation('nobody'));
    expect(cache.isAbsent('nobody')).toBe(true);
    changedElsewhere({ cache, tarballs: new TarballCache(mkdtempSync(join(tmpdir(), 'absent-')), 0), ownWrites: new Map() }, 'nobody', '1-a');
    expect(cache.isAbsent('nobody')).toBe(false);
    // A read that a change overtook does not say the name is absent.
    const generation = cache.generation('late');
    cache.invalidate('late');
    cache.setAbsent('late', generation);
    expect(cache.isAbsent('late')).toBe(false);
    cache.setAbsent('gone', cache.generation('gone'));
    cache.setLive(false);
    cache.setLive(true);
    expect(cache.isAbsent('gone')).toBe(false);
  });

  it('evicts the least recently used within its byte budget, and skips entries over a quarter of it', () => {
    const cache = new PackumentCache(100);
    cache.setLive(true);
    // 24 bytes an entry (full and abbreviated): the fifth goes over 100 and the least recent goes.
    for (const name of ['a', 'b', 'c']) cache.set(name, cache.generation(name), entry('1-' + name, 12));
    cache.get('a');
    cache.set('d', cache.generation('d'), entry('1-d', 12));
    cache.set('e', cache.generation('e'), entry('1-e', 12));
    expect(cache.size.bytes).toBeLessThanOrEqual(100);
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('b')).toBeUndefined();
    cache.set('huge', cache.generation('huge'), entry('1-h', 20));
    expect(cache.get('huge')).toBeUndefined();
  });

  it('keeps what this gateway stored on writing when the feed reports that same revision', () => {
    const cache = new PackumentCache(1000);
    const tarballs = new TarballCache(mkdtempSync(join(tmpdir(), 'tarballs-')));
    cache.setLive(true);
    tarballs.setLive(true);
    const ownWrites = new Map([['a', '2-mine']]);
    cache.set('a', cache.generation('a'), entry('2-mine'));
    void tarballs.put('a', 'a-1.0.0.tgz', tarballs.generation('a'), Buffer.from('tgz'), '"x"');
    changedElsewhere({ cache, tarballs, ownWrites }, 'a', '2-mine');
    expect(cache.get('a')?.rev).toBe('2-mine');
    expect(tarballs.get('a', 'a-1.0.0.tgz')).toBeDefined();
    changedElsewhere({ cache, tarballs, ownWrites }, 'a', '3-theirs');
    expect(cache.get('a')).toBeUndefined();
    expect(tarballs.get('a', 'a-1.0.0.tgz')).toBeUndefined();
  });
});

describe('what the local database is known not to have', () => {
  it('is known only while its feed is followed, until the name changes there; a read a change overtook records nothing', () => {
    const absence = new LocalAbsence();
    absence.seen('left-pad', absence.generation('left-pad'));
    expect(absence.knows('left-pad')).toBe(false); // not followed yet
    absence.setLive(true);
    absence.seen('left-pad', absence.generation('left-pad'));
    expect(absence.knows('left-pad')).toBe(true);
    expect(absence.knows('right-pad')).toBe(false);
    // Published here (by this gateway, or reported by the feed): read again.
    absence.changed('left-pad');
    expect(absence.knows('left-pad')).toBe(false);
    // A read that started before a change cannot record what it read.
    const before = absence.generation('is-odd');
    absence.changed('is-odd');
    absence.seen('is-odd', before);
    expect(absence.knows('is-odd')).toBe(false);
    absence.seen('is-even', absence.generation('is-even'));
    absence.setLive(false);
    expect(absence.knows('is-even')).toBe(false);
    absence.setLive(true);
    expect(absence.knows('is-even')).toBe(false);
  });
});

describe('tarball cache', () => {
  const large = () => Buffer.alloc(MEMORY_TARBALL_BYTES + 1, 7);
  /** The files under `dir`, at any depth. */
  const files = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());

  it('deletes a package\'s files when it changes', async () => {
    const tarballs = new TarballCache(mkdtempSync(join(tmpdir(), 'tarballs-')));
    tarballs.setLive(true);
    await tarballs.put('@s/p', 'p-1.0.0.tgz', tarballs.generation('@s/p'), large(), '"e"');
    const cached = tarballs.get('@s/p', 'p-1.0.0.tgz');
    expect(cached?.size).toBe(MEMORY_TARBALL_BYTES + 1);
    expect(existsSync(cached!.path!)).toBe(true);
    tarballs.invalidate('@s/p');
    expect(tarballs.get('@s/p', 'p-1.0.0.tgz')).toBeUndefined();
    expect(existsSync(cached!.path!)).toBe(false);
  });

  it('keeps a small tarball in hand in memory only, and lets it go with its bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tarballs-'));
    const tarballs = new TarballCache(dir, 10);
    tarballs.setLive(true);
    await tarballs.put('p', 'p-1.0.0.tgz', tarballs.generation('p'), Buffer.from('bytes'), '"e"');
    const cached = tarballs.get('p', 'p-1.0.0.tgz');
    expect(cached?.data?.toString()).toBe('bytes');
    expect(cached?.path).toBeUndefined();
    expect(files(dir)).toEqual([]);
    // Another one does not fit beside it: the first leaves the cache (CouchDB serves it from then on).
    await tarballs.put('q', 'q-1.0.0.tgz', tarballs.generation('q'), Buffer.from('others'), '"f"');
    expect(tarballs.get('q', 'q-1.0.0.tgz')?.data?.toString()).toBe('others');
    expect(tarballs.get('p', 'p-1.0.0.tgz')).toBeUndefined();
  });

  it('keeps no file of a package that changed while the file was written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tarballs-'));
    const tarballs = new TarballCache(dir);
    tarballs.setLive(true);
    const written = tarballs.put('p', 'p-1.0.0.tgz', tarballs.generation('p'), large(), '"e"');
    tarballs.invalidate('p');
    await written;
    expect(tarballs.get('p', 'p-1.0.0.tgz')).toBeUndefined();
    expect(files(dir)).toEqual([]);
  });

  it('lists a tarball too large for memory only once its file is written', async () => {
    const tarballs = new TarballCache(mkdtempSync(join(tmpdir(), 'tarballs-')));
    tarballs.setLive(true);
    const bytes = large();
    const written = tarballs.put('p', 'p-1.0.0.tgz', tarballs.generation('p'), bytes, '"e"');
    expect(tarballs.get('p', 'p-1.0.0.tgz')).toBeUndefined();
    await written;
    const cached = tarballs.get('p', 'p-1.0.0.tgz');
    expect(cached?.data).toBeUndefined();
    expect(readFileSync(cached!.path!).equals(bytes)).toBe(true);
  });
});

describe('copies of served packuments (served-copies.ts)', () => {
  const made = (rev: string, text: string) => ({ rev, variant: '', full: Buffer.from('{"full":"' + text + '"}'), abbreviated: Buffer.from('{"a":"' + text + '"}'), policy: '', origin: 'https://upstream.example', mirrored: true });
  const source = (entries: [string, ReturnType<typeof made>][]) => ({ entries: () => entries, checkedAt: () => 1234 });
  const origins = ['this-registry'];

  async function saved(entries: [string, ReturnType<typeof made>][], baseUrl = 'http://registry.example'): Promise<string> {
    const path = join(mkdtempSync(join(tmpdir(), 'copies-')), 'cache', 'packuments-registry.idx');
    const copies = new ServedCopies(path);
    copies.load(baseUrl);
    expect(await copies.save(source(entries))).toBe(entries.length);
    return path;
  }

  it('gives back the bytes of a copy of the revision asked, with what it was made with; another revision is outdated', async () => {
    const path = await saved([['a', made('1-a', 'A')], ['b', made('2-b', 'B')]]);
    const copies = new ServedCopies(path);
    copies.load('http://registry.example');
    const copy = await copies.take('b', '2-b', origins, NO_POLICY);
    expect(copy && typeof copy === 'object' && [copy.entry.full.toString(), copy.entry.abbreviated.toString(), copy.checkedAt, copy.entry.mirrored]).toEqual(['{"full":"B"}', '{"a":"B"}', 1234, true]);
    expect(await copies.take('a', '2-a', origins, NO_POLICY)).toBe('outdated');
    // An outdated copy is forgotten.
    expect(await copies.take('a', '1-a', origins, NO_POLICY)).toBeNull();
    // Closed at the stop: no copy is read after it (nor its file opened again).
    await copies.close();
    expect(await copies.take('b', '2-b', origins, NO_POLICY)).toBeNull();
  });

  it('keeps none made for another address, and none of an index that cannot be read', async () => {
    const path = await saved([['a', made('1-a', 'A')]]);
    const elsewhere = new ServedCopies(path);
    elsewhere.load('http://other.example');
    expect(elsewhere.size).toBe(0);
    writeFileSync(path, 'not json\n' + readFileSync(path, 'utf8').split('\n').slice(1).join('\n'));
    const broken = new ServedCopies(path);
    broken.load('http://registry.example');
    expect(broken.size).toBe(0);
  });

  it('does not use a copy under another policy, or one whose bytes changed', async () => {
    const path = await saved([['a', made('1-a', 'A')], ['b', made('1-b', 'B')]]);
    const copies = new ServedCopies(path);
    copies.load('http://registry.example');
    const blocking = { ...NO_POLICY, blocked: [{ package: 'a', reason: 'no' }] };
    expect(await copies.take('a', '1-a', origins, blocking)).toBe('outdated');
    const bin = path.replace(/\.idx$/, '.bin');
    const bytes = readFileSync(bin);
    bytes[bytes.length - 3] ^= 1;
    writeFileSync(bin, bytes);
    expect(await copies.take('b', '1-b', origins, NO_POLICY)).toBe('damaged');
    await copies.close();
  });
});
