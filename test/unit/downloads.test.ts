import { downloadDocId, downloadDocRange, parsePeriod, sumDownloads, versionOfTarballFile } from '../../core/downloads';

const NOW = Date.parse('2026-03-10T15:00:00Z');

describe('download periods (npm downloads API)', () => {
  it('names the last day, week, month and year, ending today', () => {
    expect(parsePeriod('last-day', NOW)).toEqual({ start: '2026-03-10', end: '2026-03-10' });
    expect(parsePeriod('last-week', NOW)).toEqual({ start: '2026-03-04', end: '2026-03-10' });
    expect(parsePeriod('last-month', NOW)).toEqual({ start: '2026-02-09', end: '2026-03-10' });
  });

  it('takes a day or two days, and refuses what is not one', () => {
    expect(parsePeriod('2026-02-28', NOW)).toEqual({ start: '2026-02-28', end: '2026-02-28' });
    expect(parsePeriod('2026-02-01:2026-02-28', NOW)).toEqual({ start: '2026-02-01', end: '2026-02-28' });
    for (const bad of ['2026-02-30', 'yesterday', '2026-03-02:2026-03-01', '2020-01-01:2026-01-01', '2026-01-01:2026-01-02:2026-01-03', '']) {
      expect(typeof parsePeriod(bad, NOW)).toBe('string');
    }
  });
});

describe('download documents', () => {
  it('reads the version out of a tarball file name, scoped or not', () => {
    expect(versionOfTarballFile('left-pad', 'left-pad-1.2.3.tgz')).toBe('1.2.3');
    expect(versionOfTarballFile('@acme/left-pad', 'left-pad-1.0.0-beta.1.tgz')).toBe('1.0.0-beta.1');
    expect(versionOfTarballFile('left', 'left-pad-1.2.3.tgz')).toBe('pad-1.2.3');
    expect(versionOfTarballFile('left-pad', 'other-1.0.0.tgz')).toBeNull();
  });

  it('keeps one package\'s days together in id order, apart from names that start alike', () => {
    const range = downloadDocRange('foo', '2026-03-01', '2026-03-10');
    const inRange = (id: string) => id >= range.startkey && id <= range.endkey;
    expect(inRange(downloadDocId('foo', '2026-03-01', 'abc'))).toBe(true);
    expect(inRange(downloadDocId('foo', '2026-03-10', 'ffffffffffff'))).toBe(true);
    expect(inRange(downloadDocId('foo', '2026-03-11', 'abc'))).toBe(false);
    expect(inRange(downloadDocId('foo-bar', '2026-03-05', 'abc'))).toBe(false);
    expect(inRange(downloadDocId('foo.js', '2026-03-05', 'abc'))).toBe(false);
  });

  it('adds up gateways, days and versions; every day of the period is listed', () => {
    const counts = sumDownloads('foo', { start: '2026-03-08', end: '2026-03-10' }, [
      { day: '2026-03-08', versions: { '1.0.0': 2 } },
      { day: '2026-03-10', versions: { '1.0.0': 1, '2.0.0': 4 } },
      { day: '2026-03-10', versions: { '2.0.0': 3 } },
      { day: '2026-03-07', versions: { '1.0.0': 100 } },
    ]);
    expect(counts).toEqual({
      package: 'foo', start: '2026-03-08', end: '2026-03-10', total: 10,
      days: [{ day: '2026-03-08', downloads: 2 }, { day: '2026-03-09', downloads: 0 }, { day: '2026-03-10', downloads: 8 }],
      versions: { '1.0.0': 3, '2.0.0': 7 },
    });
  });
});
