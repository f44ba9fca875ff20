/**
 * Download counts: what the registry counts of its own tarball downloads, and how they are stored and
 * read back, without Node APIs.
 *
 * Each gateway process counts in memory and writes, now and then, one document per package, day and
 * gateway run (`downloadDocId`) into the downloads database: a document has one writer, so gateways
 * in front of one CouchDB, and sites replicating their downloads databases, add up instead of
 * overwriting each other, and no write ever conflicts. A package's counts over a period are a range
 * of document ids (name, then day), summed.
 *
 * Periods are those of npm's downloads API (`last-day`, `last-week`, `last-month`, a day, or
 * `start:end`), in UTC days. They end today: counts here are live (at most a flush behind), where
 * npm's end on its last complete day.
 */

/** What a download document holds: one package's downloads of one day served by one gateway run. */
export interface DownloadDoc {
  _id: string;
  _rev?: string;
  type: 'downloads';
  package: string;
  /** `YYYY-MM-DD`, UTC. */
  day: string;
  /** The gateway run that counted them. */
  gateway: string;
  /** Downloads per version (the version a tarball's file name carries). */
  versions: Record<string, number>;
}

/** Separates the parts of a download document's id: never part of a package name or a day. */
const SEPARATOR = '|';

/** The id of the document of `name`'s downloads on `day` counted by `gateway`. */
export function downloadDocId(name: string, day: string, gateway: string): string {
  return name + SEPARATOR + day + SEPARATOR + gateway;
}

/** The `_all_docs` range of every document of `name`'s downloads from day `start` to day `end`, both included. */
export function downloadDocRange(name: string, start: string, end: string): { startkey: string; endkey: string } {
  return { startkey: name + SEPARATOR + start, endkey: name + SEPARATOR + end + SEPARATOR + '\ufff0' };
}

/**
 * The version a tarball file of `name` is of (`<name without scope>-<version>.tgz`, as npm names
 * them), or null for another file name.
 */
export function versionOfTarballFile(name: string, file: string): string | null {
  const base = name.charAt(0) === '@' ? name.slice(name.indexOf('/') + 1) : name;
  if (file.length <= base.length + 5 || !file.endsWith('.tgz') || file.charAt(base.length) !== '-' || !file.startsWith(base)) return null;
  return file.slice(base.length + 1, -4);
}

const DAY_MS = 86_400_000;
/** The longest period one read covers (npm's limit is 18 months). */
export const MAX_PERIOD_DAYS = 550;

/** The UTC day (`YYYY-MM-DD`) of a time in milliseconds. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The milliseconds of the start of a `YYYY-MM-DD` day, or NaN for anything else (2026-02-30 too). */
function dayStart(day: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return NaN;
  const ms = Date.parse(day + 'T00:00:00Z');
  return Number.isFinite(ms) && dayOf(ms) === day ? ms : NaN;
}

/** A period of whole days, both ends included. */
export interface DayPeriod {
  start: string;
  end: string;
}

/**
 * The days of a period as npm's downloads API names it, as of `now`; a string saying what is wrong
 * with anything else.
 */
export function parsePeriod(period: string, now: number): DayPeriod | string {
  const today = dayStart(dayOf(now));
  const back = (days: number): DayPeriod => ({ start: dayOf(today - (days - 1) * DAY_MS), end: dayOf(today) });
  if (period === 'last-day') return back(1);
  if (period === 'last-week') return back(7);
  if (period === 'last-month') return back(30);
  if (period === 'last-year') return back(365);
  const [from, to, more] = period.split(':');
  const startMs = dayStart(from);
  const endMs = to === undefined ? startMs : dayStart(to);
  if (more !== undefined || !Number.isFinite(startMs) || !Number.isFinite(endMs)) {
    return 'The period "' + period + '" is not one of last-day, last-week, last-month, last-year, a day (YYYY-MM-DD) or two days (YYYY-MM-DD:YYYY-MM-DD).';
  }
  if (endMs < startMs) return 'The period "' + period + '" ends before it starts.';
  if ((endMs - startMs) / DAY_MS + 1 > MAX_PERIOD_DAYS) return 'The period "' + period + '" is longer than ' + MAX_PERIOD_DAYS + ' days; ask for a shorter one.';
  return { start: dayOf(startMs), end: dayOf(endMs) };
}

/** Every day of a period, in order. */
export function daysOf(period: DayPeriod): string[] {
  const days: string[] = [];
  for (let ms = dayStart(period.start), end = dayStart(period.end); ms <= end; ms += DAY_MS) days.push(dayOf(ms));
  return days;
}

/** One package's downloads over a period: per day (every day, zeros too), per version, and in all. */
export interface DownloadCounts {
  package: string;
  start: string;
  end: string;
  total: number;
  days: { day: string; downloads: number }[];
  versions: Record<string, number>;
}

/** Sums download documents (and counts not written yet, in the same shape) of `name` over `period`. */
export function sumDownloads(name: string, period: DayPeriod, docs: Iterable<Pick<DownloadDoc, 'day' | 'versions'>>): DownloadCounts {
  const perDay = new Map<string, number>();
  const versions: Record<string, number> = Object.create(null) as Record<string, number>;
  let total = 0;
  for (const doc of docs) {
    if (!doc || typeof doc.day !== 'string' || doc.day < period.start || doc.day > period.end || !doc.versions || typeof doc.versions !== 'object') continue;
    for (const [version, count] of Object.entries(doc.versions)) {
      if (typeof count !== 'number' || !(count > 0)) continue;
      perDay.set(doc.day, (perDay.get(doc.day) || 0) + count);
      versions[version] = (versions[version] || 0) + count;
      total += count;
    }
  }
  return { package: name, start: period.start, end: period.end, total, days: daysOf(period).map((day) => ({ day, downloads: perDay.get(day) || 0 })), versions };
}
