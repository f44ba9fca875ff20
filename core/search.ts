/**
 * Search: the words a package is found by, and the in-memory index that finds packages by them.
 *
 * The index holds one summary per package name (what a search result shows) and, for every term,
 * the packages that have it and how well (0 the exact name, 1 a part of the name, 2 a keyword,
 * 3 a word of the description). A query matches every term of its words as a prefix of a package's
 * term; packages rank by the sum of their best matches (an exact term better than a prefix by 0.5),
 * the exact name first. A package published here hides a mirrored one of the same name.
 *
 * Typos: a query word of 4 to 32 characters that matches fewer than a page of packages (20) also
 * matches the terms and whole names one edit away (a letter added, removed, replaced, or two
 * neighbours swapped), found by looking each such spelling up (about 75 per character of the word),
 * never by reading every term, and at most about 4,800 spellings a query; such a match ranks below
 * every exact or prefix match of the word. Qualifiers narrow a query as npm's search does (`keywords:`,
 * `author:`, `maintainer:`, `scope:`, `not:unstable`, `is:unstable`, `boost-exact:false`).
 *
 * Qualifiers are answered from indexes of their own (people, keywords, the name order for scopes),
 * never by reading the summaries of candidates. The index also keeps, for every name, the packages
 * whose latest version depends on it (`dependents`).
 */
import { PackageDoc, Person } from './types';
import { revGeneration } from './mirrored';

/** The lower-case terms of `text`: runs of letters, digits and "@", 2 to 64 characters long. */
export function terms(text: string): string[] {
  return text.toLowerCase().split(/[^a-z0-9@]+/).filter((t) => t.length > 1 && t.length <= 64);
}

/** What a search result shows of a package: its document without versions, readme or attachments. */
export interface SearchEntry {
  name: string;
  /** The `latest` dist-tag. */
  version: string;
  description?: string;
  keywords?: string[];
  /** `time.modified`. */
  date?: string;
  /** Who published the latest version. */
  publisher?: Person;
  maintainers: Person[];
  origin?: string;
  url?: string;
}

/**
 * A summary as the index keeps it: one string, the JSON of `[version, description, keywords, date,
 * publisher, maintainers, origin, url]` with each person as `[name, email]` and the name left out
 * (the index has it). One string per package instead of a dozen objects and strings: a third of the
 * memory, and nothing for the garbage collector to walk.
 */
export type PackedEntry = string;

const packPerson = (p: Person | undefined): [string, string?] | null => (p ? (p.email === undefined ? [p.name] : [p.name, p.email]) : null);

export function packEntry(entry: SearchEntry): PackedEntry {
  const { version, description, keywords, date, publisher, maintainers, origin, url } = entry;
  return JSON.stringify([version, description ?? null, keywords ?? null, date ?? null, packPerson(publisher), maintainers.map(packPerson), origin ?? null, url ?? null]);
}

const unpackPerson = (p: [string, string?] | null): Person | undefined => (p ? { name: p[0], email: p[1] ?? undefined } : undefined);

/** The summary that `packEntry` packed, as `searchEntry` made it. */
export function unpackEntry(name: string, packed: PackedEntry): SearchEntry {
  const [version, description, keywords, date, publisher, maintainers, origin, url] = JSON.parse(packed);
  return {
    name, version,
    description: description ?? undefined, keywords: keywords ?? undefined, date: date ?? undefined,
    publisher: unpackPerson(publisher), maintainers: (maintainers as [string, string?][]).map((p) => unpackPerson(p) as Person),
    origin: origin ?? undefined, url: url ?? undefined,
  };
}

/** Where a package document lives: published here, or mirrored from the upstream. */
export type SearchSource = 'local' | 'mirrored';

const DESCRIPTION_CHARS = 1000;

function person(value: unknown): Person | undefined {
  const p = value as Person | null;
  return p && typeof p === 'object' && typeof p.name === 'string' ? { name: p.name, email: typeof p.email === 'string' ? p.email : undefined } : undefined;
}

/** A string of its own: a slice of a long one would keep all of it in memory. */
function own(text: string): string {
  return text.length < DESCRIPTION_CHARS ? text : (JSON.parse(JSON.stringify(text)) as string);
}

/** The summary of a package document, or null when it has no version to find (a tombstone, a foreign package). */
export function searchEntry(doc: PackageDoc): SearchEntry | null {
  if (!doc || typeof doc.name !== 'string' || !doc.versions || typeof doc.versions !== 'object') return null;
  if (Object.keys(doc.versions).length === 0) return null;
  const tags = doc['dist-tags'] && typeof doc['dist-tags'] === 'object' ? doc['dist-tags'] : {};
  const version = typeof tags.latest === 'string' ? tags.latest : '';
  const latest = (version && doc.versions[version]) || {};
  const time = doc.time && typeof doc.time === 'object' ? doc.time : {};
  return {
    name: doc.name,
    version,
    description: typeof doc.description === 'string' ? own(doc.description.slice(0, DESCRIPTION_CHARS)) : undefined,
    keywords: Array.isArray(doc.keywords) ? doc.keywords.filter((k): k is string => typeof k === 'string').slice(0, 100) : undefined,
    date: typeof time.modified === 'string' ? time.modified : undefined,
    publisher: person((latest as { _npmUser?: unknown })._npmUser),
    maintainers: Array.isArray(doc.maintainers) ? doc.maintainers.map(person).filter((p): p is Person => !!p) : [],
    origin: typeof doc.origin === 'string' ? doc.origin : undefined,
    url: typeof doc.url === 'string' ? doc.url : undefined,
  };
}

/** The terms of a package and where each came from (0 exact name, 1 name part, 2 keyword, 3 description). */
export function searchTerms(entry: SearchEntry): Map<string, number> {
  const ranks = new Map<string, number>();
  const add = (term: string, rank: number) => {
    const known = ranks.get(term);
    if (known === undefined || known > rank) ranks.set(term, rank);
  };
  const name = entry.name.toLowerCase();
  add(name, 0);
  for (const part of terms(name.replace(/^@/, ''))) add(part, 1);
  for (const keyword of entry.keywords || []) for (const t of terms(keyword)) add(t, 2);
  for (const t of terms(entry.description || '')) add(t, 3);
  return ranks;
}

/** What a query's qualifiers ask of the packages found (npm's search qualifiers). */
export interface SearchFilters {
  /** `keywords:a,b+c,-d`: packages with keyword a, or both b and c (`any`, groups), and without d (`none`). */
  keywords?: { any: string[][]; none: string[] };
  /** `author:` — who published the latest version (npm's `publisher`). */
  author?: string;
  /** `maintainer:` — one of the maintainers. */
  maintainer?: string;
  /** `scope:acme` or `scope:@acme`: packages of that scope. */
  scope?: string;
  /** `is:unstable` (true: versions below 1.0.0 only) or `not:unstable` (false: none of them). */
  unstable?: boolean;
}

const QUALIFIER = /^(keywords|author|maintainer|scope|not|is|boost-exact):(.*)$/;

/** The most keywords one query's `keywords:` qualifiers name, counting each group's (as a query's parts are at most 16). */
const MAX_KEYWORDS = 16;

const keywordsNamed = (keywords: NonNullable<SearchFilters['keywords']>): number => keywords.none.length + keywords.any.reduce((sum, group) => sum + group.length, 0);

/**
 * The terms a query's words ask for (a scoped name as it is, other words split like the terms of
 * packages), and its qualifiers. `exactName`: the name listed first when a package has it.
 */
export function queryTerms(text: string): { parts: string[]; exactName: string | null; filters?: SearchFilters } {
  const all = text.toLowerCase().split(/\s+/).filter(Boolean).slice(0, 20);
  const words: string[] = [];
  const filters: SearchFilters = {};
  let boostExact = true;
  let qualified = false;
  for (const word of all) {
    const qualifier = QUALIFIER.exec(word);
    if (!qualifier) {
      words.push(word);
      continue;
    }
    const [, key, value] = qualifier;
    qualified = true;
    if (key === 'keywords') {
      const keywords = filters.keywords || (filters.keywords = { any: [], none: [] });
      // Each keyword named costs a pass over its packages: repeats count once, and at most MAX_KEYWORDS are read.
      for (const item of value.split(',').filter(Boolean)) {
        if (item.startsWith('-')) {
          const keyword = item.slice(1);
          if (keyword && !keywords.none.includes(keyword) && keywordsNamed(keywords) < MAX_KEYWORDS) keywords.none.push(keyword);
          continue;
        }
        const group = [...new Set(item.split('+').filter(Boolean))].slice(0, MAX_KEYWORDS - keywordsNamed(keywords));
        const same = (other: string[]) => other.length === group.length && other.every((keyword) => group.includes(keyword));
        if (group.length && !keywords.any.some(same)) keywords.any.push(group);
      }
    } else if (key === 'author' || key === 'maintainer') filters[key] = value;
    else if (key === 'scope') filters.scope = value.replace(/^@/, '').replace(/\/$/, '');
    else if (key === 'boost-exact') boostExact = value !== 'false';
    // `insecure` is not known here (no advisories): `not:insecure` keeps everything, `is:insecure` too.
    else if (value === 'unstable') filters.unstable = key === 'is';
  }
  const parts: string[] = [];
  for (const word of words.slice(0, 10)) {
    const split = word.startsWith('@') || word.includes('/') ? [word] : terms(word);
    for (const part of split.length ? split : [word]) if (!parts.includes(part)) parts.push(part);
  }
  const exactName = boostExact && words.length === 1 ? words[0] : null;
  return qualified ? { parts: parts.slice(0, 16), exactName, filters } : { parts: parts.slice(0, 16), exactName };
}

/** The names a package's latest version depends on (dependencies, optional and peer dependencies), at most 1,000. */
export function dependencyNames(doc: PackageDoc): string[] {
  const tags = doc && doc['dist-tags'] && typeof doc['dist-tags'] === 'object' ? doc['dist-tags'] : {};
  const latest = typeof tags.latest === 'string' && doc.versions && typeof doc.versions === 'object' ? (doc.versions[tags.latest] as Record<string, unknown> | undefined) : undefined;
  if (!latest || typeof latest !== 'object') return [];
  const names = new Set<string>();
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies']) {
    const deps = latest[field];
    if (!deps || typeof deps !== 'object' || Array.isArray(deps)) continue;
    for (const name of Object.keys(deps)) if (name.length <= 214 && names.size < 1000) names.add(name);
  }
  return [...names];
}

/**
 * Calls `visit` with every spelling one edit away from `word` (a letter added, removed or replaced,
 * two neighbours swapped); a few more than once, none kept (a query's typo look-ups make no list).
 */
export function forEachEdit(word: string, visit: (spelling: string) => void): void {
  const n = word.length;
  for (let i = 0; i < n; i++) visit(word.slice(0, i) + word.slice(i + 1));
  for (let i = 0; i + 1 < n; i++) if (word[i] !== word[i + 1]) visit(word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2));
  for (let i = 0; i <= n; i++) {
    const before = word.slice(0, i);
    const after = word.slice(i);
    const rest = word.slice(i + 1);
    for (let c = 0; c < EDIT_LETTERS.length; c++) {
      const letter = EDIT_LETTERS[c];
      visit(before + letter + after);
      if (i < n && letter !== word[i]) visit(before + letter + rest);
    }
  }
}

/** The spellings one edit away from `word`, each once, without `word` itself. */
export function oneEditAway(word: string): string[] {
  const seen = new Set<string>();
  forEachEdit(word, (spelling) => seen.add(spelling));
  seen.delete(word);
  return [...seen];
}

/** What an edit may add or put in place of a letter: what terms and names are made of. */
const EDIT_LETTERS = 'abcdefghijklmnopqrstuvwxyz0123456789-';
/** Query words this long, and no longer, also match what is one edit away. */
const TYPO_MIN = 4;
const TYPO_MAX = 32;
/**
 * A word also matches what is one edit away while it matches fewer packages than this (with the words
 * before it): a word with a page of exact matches is no typo, and its neighbours' long lists are not read.
 */
const TYPO_BELOW = 20;
/** The most spellings one query looks up (two words of 32 letters, or eight of 7), so that many long words stay cheap. */
const TYPO_BUDGET = 2 * (EDIT_LETTERS.length * 2 * TYPO_MAX + EDIT_LETTERS.length);

export interface SearchHit {
  entry: SearchEntry;
  /** Sum over the query's terms of the best rank each matched with (0 best). */
  rank: number;
  exact: boolean;
}

interface Held {
  /** The generation of the document's revision. */
  rev: number;
  /** Whether the document exists (not deleted); it may exist with nothing to find (a tombstone). */
  exists: boolean;
  entry: PackedEntry | null;
  /** What its latest version depends on (ids of `dependencyNames`), null for none. */
  deps: number[] | null;
}

interface Slot {
  name: string;
  /** What each database holds of the package. */
  local?: Held;
  mirrored?: Held;
  /** The entry found (the local one, else the mirrored one); its terms are what the package is indexed under. */
  visible: PackedEntry | null;
  /** The dependencies it is listed under in `dependents`: those of the visible one. */
  visibleDeps: number[] | null;
}

/** A package published here hides the mirrored one while its document exists, even as a tombstone. */
function visibleOf(slot: Slot): Held | null {
  return slot.local && slot.local.exists ? slot.local : slot.mirrored && slot.mirrored.exists ? slot.mirrored : null;
}

/** The first line of a snapshot: how many lines of each kind follow. */
interface SnapshotCounts {
  packages: number;
  dependencies: number;
  terms: number;
  people: number;
  keywords: number;
}

/** New terms wait in a small sorted list; past this many they are merged into the large one. */
const FRESH_TERMS = 8192;

/** Sort keys of hits: the exact name (0), then each rank in halves (up to 16 parts × 14) plus one. */
const KEYS = 16 * 14 + 2;
/** The rank sum of a candidate the caller may not see. */
const HIDDEN = 255;

/** Ranks are counted in halves: a term's place (0–3) times two, plus one when only a prefix matched. */
const PREFIX = 1;
/** A match one edit away ranks after every exact or prefix match of the word: 8 halves, plus the term's place times two. */
const TYPO = 8;
/** Kinds of people in `people` (maintainers and publishers), by `id * 4 + kind`. */
const MAINTAINER = 1;
const PUBLISHER = 2;
/** Bits of `found`: the package can be found; its latest version is below 1.0.0 (`is:unstable`). */
const FOUND = 1;
const UNSTABLE = 2;

export class SearchIndex {
  private readonly slots: Slot[] = [];
  /** The name of each slot, and whether it can be found (`FOUND`, and `UNSTABLE`), by id: what a query reads of thousands of packages. */
  private readonly names: string[] = [];
  private found = new Uint8Array(1024);
  private readonly ids = new Map<string, number>();
  /** term → postings, each `id * 4 + place` (place 0–3: exact name, name part, keyword, description). */
  private readonly postings = new Map<string, number[]>();
  /** person's name in lower case → `id * 4 + kind` (MAINTAINER, PUBLISHER): for `maintainer:` and `author:`. */
  private readonly people = new Map<string, number[]>();
  /** keyword in lower case → the ids of the packages that have it: for `keywords:` (never reading the packages' entries). */
  private readonly keywordIds = new Map<string, number[]>();
  /** The names packages depend on, once each, by number; and the packages listed under each (`dependents`). */
  private readonly depIds = new Map<string, number>();
  private readonly dependents: number[][] = [];
  private readonly depNames: string[] = [];
  /** Every term, sorted, for prefix lookups (in two lists: the large one and the fresh one); terms no longer used are dropped when the lists merge. */
  private sorted: string[] = [];
  private fresh: string[] = [];
  /** The postings of each term of `sorted` and `fresh`, at the same places (a term's list may have emptied since). */
  private sortedLists: number[][] = [];
  private freshLists: number[][] = [];
  /** Terms added since the last query, not sorted yet. */
  private pending: string[] = [];
  /** Each id's name in lower case: what a query's part is matched with as a prefix of the whole name. */
  private readonly lowerNames: string[] = [];
  /**
   * Every id in the order of its name (in lower case, then as it is), and each id's place in it: the
   * whole names a prefix matches are a range of it (rather than a term each), and hits of one rank are
   * ordered by number rather than by comparing strings. Ids added since wait in `unordered`.
   */
  private byName: number[] = [];
  private nameOrder = new Int32Array(1024);
  private unordered: number[] = [];
  private visibleCount = 0;
  /** Per-query scratch, one byte per package, zeroed again after each query. */
  private matched = new Uint8Array(0);
  private best = new Uint8Array(0);
  private sum = new Uint8Array(0);
  private first = new Int32Array(0);
  private current = new Int32Array(0);
  /** How many more spellings one edit away the current query may look up. */
  private typoBudget = 0;
  /** Packages indexed again since the lists were last trimmed (`compact`). */
  private changedSinceCompact = 0;

  /** How many packages can be found. */
  get size(): number {
    return this.visibleCount;
  }

  /** Whether either database has a document named `name` (a tombstone or a foreign package too). */
  holds(name: string): boolean {
    const id = this.ids.get(name);
    if (id === undefined) return false;
    const slot = this.slots[id];
    return !!((slot.local && slot.local.exists) || (slot.mirrored && slot.mirrored.exists));
  }

  /** Everything the index holds, as lines of JSON (`snapshotLines`), for `restore` to read back. */
  snapshot(): string[] {
    return [...this.snapshotLines()];
  }

  /** Puts back what `snapshot` gave (into an empty index). */
  restore(lines: Iterable<string>): void {
    const reader = this.restoreLines();
    for (const line of lines) reader.line(line);
    reader.end();
  }

  /**
   * The index as lines of JSON, one at a time (a snapshot of a million packages is written without
   * holding it all): a line of counts; a line per package (its name, and what each database holds of
   * it: revision, whether it exists, packed summary, dependencies by number); the name order; a line
   * per dependency name (with the packages that depend on it), per term (sorted, with its postings),
   * per person and per keyword. What the index computed is read back as it is: no package is indexed
   * again (a tenth of the time).
   */
  *snapshotLines(): Generator<string> {
    this.settle();
    const [terms, lists] = merge(this.sorted, this.fresh, this.postings);
    const counts: SnapshotCounts = { packages: this.slots.length, dependencies: this.depNames.length, terms: terms.length, people: this.people.size, keywords: this.keywordIds.size };
    yield JSON.stringify(counts);
    const held = (h: Held | undefined) => (h ? [h.rev, h.exists, h.entry, h.deps || 0] : null);
    for (const slot of this.slots) yield JSON.stringify([slot.name, held(slot.local), held(slot.mirrored)]);
    yield JSON.stringify(this.byName);
    for (let d = 0; d < this.depNames.length; d++) yield JSON.stringify([this.depNames[d], this.dependents[d]]);
    for (let t = 0; t < terms.length; t++) yield JSON.stringify([terms[t], lists[t]]);
    for (const [person, list] of this.people) yield JSON.stringify([person, list]);
    for (const [keyword, list] of this.keywordIds) yield JSON.stringify([keyword, list]);
  }

  /**
   * Reads the lines of `snapshotLines` into this empty index, one at a time (`line`), then `end`.
   * Throws on a line that is not as written there, or on too few or too many lines: the caller then
   * drops this index and reads the packages from CouchDB.
   */
  restoreLines(): { line(text: string): void; end(): void } {
    if (this.slots.length) throw new Error('a snapshot is read only into an empty search index');
    const unreadable = (what: string): never => {
      throw new Error('the search index snapshot is unreadable (' + what + '); it is not used');
    };
    let counts: SnapshotCounts | null = null;
    let read = 0;
    let lastTerm = '';
    /** A list of the line as it was parsed (kept, not copied: its length is exact), each number checked. */
    const numbers = (list: unknown, below: number, what: string): number[] => {
      if (!Array.isArray(list)) return unreadable(what);
      for (const n of list) if (!Number.isInteger(n) || n < 0 || n >= below) unreadable(what);
      return list as number[];
    };
    const named = (row: unknown, what: string): [string, unknown, unknown?] => (Array.isArray(row) && typeof row[0] === 'string' ? (row as [string, unknown]) : unreadable(what));
    const heldOf = (h: unknown, dependencies: number): Held | undefined => {
      if (h === null) return undefined;
      if (!Array.isArray(h) || typeof h[0] !== 'number' || typeof h[1] !== 'boolean' || (h[2] !== null && typeof h[2] !== 'string')) return unreadable('a package');
      const deps = h[3] === 0 ? null : numbers(h[3], dependencies, 'dependencies');
      return { rev: h[0], exists: h[1], entry: h[2], deps: deps && deps.length ? deps : null };
    };
    return {
      line: (text) => {
        const row = JSON.parse(text) as unknown;
        if (!counts) {
          const c = row as SnapshotCounts;
          if (!c || typeof c !== 'object' || !(['packages', 'dependencies', 'terms', 'people', 'keywords'] as const).every((k) => Number.isInteger(c[k]) && c[k] >= 0)) unreadable('its counts');
          counts = c;
          return;
        }
        const n = counts.packages;
        let at = read++;
        if (at < n) {
          const [name, local, mirrored] = named(row, 'a package');
          if (this.ids.has(name)) unreadable('a package twice');
          const id = this.newSlot(name);
          const slot = this.slots[id];
          slot.local = heldOf(local, counts.dependencies);
          slot.mirrored = heldOf(mirrored, counts.dependencies);
          const held = visibleOf(slot);
          const entry = held ? held.entry : null;
          slot.visible = entry;
          slot.visibleDeps = entry && held ? held.deps : null;
          // The packed summary starts with the version: `["0.` is a version below 1.0.0.
          this.found[id] = entry === null ? 0 : entry.startsWith('["0.') ? FOUND | UNSTABLE : FOUND;
          if (entry !== null) this.visibleCount++;
          return;
        }
        if ((at -= n) === 0) {
          if (!Array.isArray(row) || row.length !== n) unreadable('the name order');
          this.byName = numbers(row, n, 'the name order');
          this.unordered = [];
          return;
        }
        if ((at -= 1) < counts.dependencies) {
          const [name, list] = named(row, 'a dependency');
          this.depIds.set(name, this.depNames.length);
          this.depNames.push(name);
          this.dependents.push(numbers(list, n, 'dependents'));
          return;
        }
        if ((at -= counts.dependencies) < counts.terms) {
          const [term, list] = named(row, 'a term');
          if (term <= lastTerm && this.sorted.length) unreadable('the terms\' order');
          lastTerm = term;
          const postings = numbers(list, n * 4, 'postings');
          this.postings.set(term, postings);
          this.sorted.push(term);
          this.sortedLists.push(postings);
          return;
        }
        if ((at -= counts.terms) < counts.people) {
          const [person, list] = named(row, 'a person');
          this.people.set(person, numbers(list, n * 4, 'a person\'s packages'));
          return;
        }
        if (at - counts.people < counts.keywords) {
          const [keyword, list] = named(row, 'a keyword');
          this.keywordIds.set(keyword, numbers(list, n, 'a keyword\'s packages'));
          return;
        }
        unreadable('more lines than it counts');
      },
      end: () => {
        if (!counts || read !== counts.packages + 1 + counts.dependencies + counts.terms + counts.people + counts.keywords) unreadable('it ends early');
        for (let k = 0; k < this.byName.length; k++) this.nameOrder[this.byName[k]] = k;
      },
    };
  }

  private newSlot(name: string): number {
    const id = this.slots.length;
    this.slots.push({ name, visible: null, visibleDeps: null });
    this.names.push(name);
    this.lowerNames.push(name.toLowerCase());
    this.ids.set(name, id);
    if (id >= this.found.length) {
      const grown = new Uint8Array(this.found.length * 2);
      grown.set(this.found);
      this.found = grown;
      const order = new Int32Array(this.found.length);
      order.set(this.nameOrder);
      this.nameOrder = order;
    }
    this.unordered.push(id);
    return id;
  }

  /**
   * A package document of `source` as it now is (null: deleted). `rev` orders the reports of one
   * document: a report older than the one applied is ignored, so a late feed cannot undo a write.
   */
  apply(source: SearchSource, name: string, rev: string | undefined, doc: PackageDoc | null): void {
    if (typeof name !== 'string' || name.startsWith('_')) return;
    let id = this.ids.get(name);
    if (id === undefined) {
      if (!doc) return;
      id = this.newSlot(name);
    }
    const slot = this.slots[id];
    const generation = revGeneration(rev);
    const known = slot[source];
    if (known && generation < known.rev) return;
    const entry = doc ? searchEntry(doc) : null;
    const packed = entry ? packEntry(entry) : null;
    slot[source] = { rev: generation, exists: !!doc, entry: packed, deps: doc && entry ? this.depsOf(dependencyNames(doc)) : null };
    const held = visibleOf(slot);
    this.reindex(id, slot, held, held && held.entry === packed ? entry : undefined);
  }

  /** The numbers of dependency names (each name numbered once), null for none. */
  private depsOf(names: unknown): number[] | null {
    if (!Array.isArray(names) || names.length === 0) return null;
    const ids: number[] = [];
    for (const name of names) {
      if (typeof name !== 'string') continue;
      let dep = this.depIds.get(name);
      if (dep === undefined) {
        dep = this.depNames.length;
        this.depIds.set(name, dep);
        this.depNames.push(name);
        this.dependents.push([]);
      }
      ids.push(dep);
    }
    // A copy of exact length: one grown by pushing keeps room for 17.
    return ids.length ? ids.slice() : null;
  }

  /** The terms a package is listed under in `postings`: all but its whole name, which `byName` finds. */
  private postedTerms(id: number, entry: SearchEntry | null): Map<string, number> {
    if (!entry) return new Map<string, number>();
    const all = searchTerms(entry);
    all.delete(this.lowerNames[id]);
    return all;
  }

  /** Lists package `id` under what its visible summary has (`held`'s; `known`: that summary unpacked, when the caller has it). */
  private reindex(id: number, slot: Slot, held: Held | null, known?: SearchEntry | null): void {
    this.changedSinceCompact++;
    const visible = held ? held.entry : null;
    const deps = visible && held ? held.deps : null;
    const entryBefore = slot.visible ? unpackEntry(slot.name, slot.visible) : null;
    const entryAfter = !visible ? null : known ? known : visible === slot.visible ? entryBefore : unpackEntry(slot.name, visible);
    if (!sameList(slot.visibleDeps, deps)) {
      // A list may be long (a name thousands depend on): taken out of only when the dependencies changed.
      for (const dep of slot.visibleDeps || []) removeFrom(this.dependents[dep], id);
      for (const dep of deps || []) this.dependents[dep].push(id);
    }
    slot.visibleDeps = deps;
    updateLists(this.keywordIds, keywordsOf(entryBefore), keywordsOf(entryAfter), id);
    const peopleBefore = peopleOf(entryBefore);
    const peopleAfter = peopleOf(entryAfter);
    if (peopleBefore.join('\n') !== peopleAfter.join('\n')) {
      for (const [person, kind] of peopleBefore) {
        const list = this.people.get(person);
        if (!list) continue;
        removeFrom(list, id * 4 + kind);
        if (list.length === 0) this.people.delete(person);
      }
      for (const [person, kind] of peopleAfter) {
        let list = this.people.get(person);
        if (!list) this.people.set(person, (list = []));
        list.push(id * 4 + kind);
      }
    }
    const before = this.postedTerms(id, entryBefore);
    const after = this.postedTerms(id, entryAfter);
    for (const [term, place] of before) {
      if (after.get(term) === place) continue;
      const list = this.postings.get(term) as number[];
      const at = list.indexOf(id * 4 + place);
      list[at] = list[list.length - 1];
      list.pop();
      if (list.length === 0) this.postings.delete(term);
    }
    for (const [term, place] of after) {
      if (before.get(term) === place) continue;
      let list = this.postings.get(term);
      if (!list) {
        list = [];
        this.postings.set(term, list);
        this.addTerm(term);
      }
      list.push(id * 4 + place);
    }
    if (!slot.visible !== !visible) this.visibleCount += visible ? 1 : -1;
    slot.visible = visible;
    this.found[id] = entryAfter ? (entryAfter.version.startsWith('0.') ? FOUND | UNSTABLE : FOUND) : 0;
  }

  private addTerm(term: string): void {
    this.pending.push(term);
  }

  /**
   * Sorts the terms added since the last query into the fresh list, and the fresh list into the
   * large one when it has grown long (leaving out terms nothing has any more). Done before a query,
   * so a bulk load sorts once.
   */
  /**
   * Gives every list of the index the length it has and no room to grow: a list grown by pushing keeps
   * room for at least 17 numbers, and most terms, dependency names and people have a few packages
   * (this is most of the index's memory). Done once a load is done; lists grow again as packages change.
   */
  compact(): void {
    this.settle();
    // Lists read from a snapshot have their length already; a few changes since leave little room.
    if (this.changedSinceCompact < 1000) return;
    this.changedSinceCompact = 0;
    for (const lists of [this.postings, this.people, this.keywordIds]) for (const [key, list] of lists) lists.set(key, list.slice());
    for (let i = 0; i < this.dependents.length; i++) this.dependents[i] = this.dependents[i].slice();
    // The sorted terms' lists are the same lists as `postings`'.
    this.sortedLists = this.sorted.map((term) => this.postings.get(term) || []);
    this.freshLists = this.fresh.map((term) => this.postings.get(term) || []);
    this.byName = this.byName.slice();
  }

  settle(): void {
    if (this.unordered.length) this.orderNames();
    if (this.pending.length === 0) return;
    const pending = this.pending.sort();
    this.pending = [];
    [this.fresh, this.freshLists] = merge(this.fresh, pending, this.postings);
    if (this.fresh.length > FRESH_TERMS || this.fresh.length > this.sorted.length) {
      [this.sorted, this.sortedLists] = merge(this.sorted, this.fresh, this.postings);
      this.fresh = [];
      this.freshLists = [];
    }
  }

  /** Merges the ids added since into the name order, and numbers every id by its place in it. */
  private orderNames(): void {
    const { names, lowerNames } = this;
    const before = (a: number, b: number) => lowerNames[a] < lowerNames[b] || (lowerNames[a] === lowerNames[b] && names[a] < names[b]);
    const added = this.unordered.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
    this.unordered = [];
    const old = this.byName;
    const findPlace = (id: number, lo: number) => {
      let hi = old.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (before(old[mid], id)) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    if (added.length <= 64) {
      // A few: put in place, and only the ids after the first one numbered again.
      let first = old.length;
      for (const id of added) {
        const at = findPlace(id, 0);
        old.splice(at, 0, id);
        first = Math.min(first, at);
      }
      for (let k = first; k < old.length; k++) this.nameOrder[old[k]] = k;
      return;
    }
    const merged: number[] = [];
    // Each added id goes after the old ones before it, found by halving: few added to many cost few comparisons of names.
    let from = 0;
    for (const id of added) {
      const lo = findPlace(id, from);
      for (let i = from; i < lo; i++) merged.push(old[i]);
      merged.push(id);
      from = lo;
    }
    for (let i = from; i < old.length; i++) merged.push(old[i]);
    for (let k = 0; k < merged.length; k++) this.nameOrder[merged[k]] = k;
    this.byName = merged;
  }

  /**
   * Marks in `matched` the packages having a term that starts with `prefix` (those that matched every
   * part before it, `k` of them), with their best rank in `best`; adds those newly marked to `touched`.
   */
  private matchPrefix(prefix: string, k: number, touched: Int32Array): number {
    // Whole names (place 0): a range of the name order.
    const { byName, lowerNames } = this;
    let i = lowerBound(byName, prefix, lowerNames);
    const end = lowerBound(byName, prefix + '\uffff', lowerNames);
    let count = 0;
    for (; i < end && lowerNames[byName[i]] === prefix; i++) count = markOne(byName[i], 0, k, this.matched, this.best, touched, count);
    for (; i < end; i++) count = markOne(byName[i], PREFIX, k, this.matched, this.best, touched, count);
    // Every other term.
    for (const [terms, postings] of [[this.sorted, this.sortedLists], [this.fresh, this.freshLists]] as const) {
      const start = lowerBound(terms, prefix);
      const end = lowerBound(terms, prefix + '\uffff');
      for (let i = start; i < end; i++) {
        // Sorted, the term that is the prefix itself comes first.
        const extra = i === start && terms[i] === prefix ? 0 : PREFIX;
        count = mark(postings[i], extra, k, this.matched, this.best, touched, count);
      }
    }
    // Typos: the terms and whole names one edit away, each looked up (never a scan of all terms).
    const spellings = EDIT_LETTERS.length * 2 * prefix.length + EDIT_LETTERS.length;
    if (count < TYPO_BELOW && prefix.length >= TYPO_MIN && prefix.length <= TYPO_MAX && !prefix.includes('/') && spellings <= this.typoBudget) {
      this.typoBudget -= spellings;
      const { ids, postings, matched, best } = this;
      forEachEdit(prefix, (spelling) => {
        const id = ids.get(spelling);
        if (id !== undefined) count = markOne(id, TYPO, k, matched, best, touched, count);
        const list = postings.get(spelling);
        if (list) count = mark(list, TYPO, k, matched, best, touched, count);
      });
    }
    return count;
  }

  /**
   * For a query of qualifiers only: the packages that can pass them, found through an index (a scope's
   * range of names, a person's packages, a keyword's packages), each marked once in `touched`; none
   * when only `not:`/`is:` or excluded keywords are given (those narrow a query, they find nothing alone).
   */
  private candidatesOf(filters: SearchFilters, touched: Int32Array): number {
    const { matched, best } = this;
    let count = 0;
    if (filters.scope !== undefined) {
      const { byName, lowerNames } = this;
      const prefix = '@' + filters.scope + '/';
      const end = lowerBound(byName, prefix + '\uffff', lowerNames);
      for (let i = lowerBound(byName, prefix, lowerNames); i < end; i++) count = markOne(byName[i], 0, 0, matched, best, touched, count);
      return count;
    }
    const person = filters.maintainer ?? filters.author;
    if (person !== undefined) {
      const kind = filters.maintainer !== undefined ? MAINTAINER : PUBLISHER;
      for (const posting of this.people.get(person) || []) if ((posting & 3) === kind) count = markOne(posting >> 2, 0, 0, matched, best, touched, count);
      return count;
    }
    const allowed = filters.keywords ? this.keywordFilter(filters.keywords).allowed : null;
    for (const id of allowed || []) count = markOne(id, 0, 0, matched, best, touched, count);
    return count;
  }

  /**
   * The packages matching every term of `parts` and the qualifiers' `filters` that `readable` lets the
   * caller see (null: all), best first: `size` of them from `from`, and how many matched in all.
   */
  query(parts: string[], exactName: string | null, readable: ((name: string) => boolean) | null, from: number, size: number, filters?: SearchFilters): { hits: SearchHit[]; total: number } {
    if (parts.length === 0 && !filters) return { hits: [], total: 0 };
    this.settle();
    const n = this.slots.length;
    if (this.matched.length < n) {
      const room = Math.max(1024, n * 2);
      this.matched = new Uint8Array(room);
      this.best = new Uint8Array(room);
      this.sum = new Uint8Array(room);
      this.first = new Int32Array(room);
      this.current = new Int32Array(room);
    }
    // matched[id]: how many parts matched so far; best[id]: the best rank for the current part; sum[id]: the total.
    // first: the packages the first part matched (all there can be); current: those the latest part matched.
    const { matched, best, sum, first, current, names } = this;
    const passes = filters ? this.filterOf(filters) : null;
    const visible = (id: number) => (!readable || readable(names[id])) && (!passes || passes(id));
    let firstCount = 0;
    let count = 0;
    this.typoBudget = TYPO_BUDGET;
    try {
      if (parts.length === 0) {
        firstCount = count = this.candidatesOf(filters as SearchFilters, first);
        return this.ranked(first, count, sum, exactName, visible, from, size);
      }
      for (let k = 0; k < parts.length; k++) {
        const touched = k === 0 ? first : current;
        count = this.matchPrefix(parts[k], k, touched);
        for (let i = 0; i < count; i++) sum[touched[i]] += best[touched[i]];
        if (k === 0) firstCount = count;
        if (count === 0) break;
      }
      return this.ranked(parts.length === 1 ? first : current, count, sum, exactName, visible, from, size);
    } finally {
      for (let i = 0; i < firstCount; i++) {
        matched[first[i]] = 0;
        sum[first[i]] = 0;
      }
    }
  }

  /** Whether a package passes a query's qualifiers (people through `people`, not by reading every candidate's). */
  private filterOf(filters: SearchFilters): (id: number) => boolean {
    const { found, lowerNames } = this;
    const peopleOfKind = (name: string | undefined, kind: number): Set<number> | null => {
      if (name === undefined) return null;
      const ids = new Set<number>();
      for (const posting of this.people.get(name) || []) if ((posting & 3) === kind) ids.add(posting >> 2);
      return ids;
    };
    const authors = peopleOfKind(filters.author, PUBLISHER);
    const maintainers = peopleOfKind(filters.maintainer, MAINTAINER);
    const scope = filters.scope !== undefined ? '@' + filters.scope + '/' : null;
    const keywords = filters.keywords ? this.keywordFilter(filters.keywords) : null;
    const { unstable } = filters;
    return (id) => {
      if (scope !== null && !lowerNames[id].startsWith(scope)) return false;
      if ((authors && !authors.has(id)) || (maintainers && !maintainers.has(id))) return false;
      if (keywords && !keywords.passes(id)) return false;
      return unstable === undefined || ((found[id] & UNSTABLE) !== 0) === unstable;
    };
  }

  /** `keywords:` through `keywordIds`: the packages with every keyword of one group (`allowed`, null: any), none of the excluded. */
  private keywordFilter(wanted: NonNullable<SearchFilters['keywords']>): { allowed: Set<number> | null; passes: (id: number) => boolean } {
    const listOf = (keyword: string) => this.keywordIds.get(keyword) || [];
    let allowed: Set<number> | null = null;
    if (wanted.any.length) {
      allowed = new Set<number>();
      for (const group of wanted.any) {
        const others = group.slice(1).map((keyword) => new Set(listOf(keyword)));
        for (const id of listOf(group[0])) if (others.every((set) => set.has(id))) allowed.add(id);
      }
    }
    const excluded = new Set<number>();
    for (const keyword of wanted.none) for (const id of listOf(keyword)) excluded.add(id);
    const only = allowed;
    return { allowed, passes: (id) => (!only || only.has(id)) && !excluded.has(id) };
  }

  /**
   * The packages whose latest version depends on `name` (dependencies, optional or peer) that
   * `readable` lets the caller see (null: all), in name order: `size` of them from `from`, and how many in all.
   */
  dependentsOf(name: string, readable: ((name: string) => boolean) | null, from: number, size: number): { packages: SearchEntry[]; total: number } {
    const dep = this.depIds.get(name);
    if (dep === undefined) return { packages: [], total: 0 };
    this.settle();
    const { found, names, slots } = this;
    const shown = this.dependents[dep].filter((id) => found[id] && (!readable || readable(names[id])));
    const page = smallestByName(shown, from + size, this.nameOrder).slice(from);
    return { packages: page.map((id) => unpackEntry(names[id], slots[id].visible as PackedEntry)), total: shown.length };
  }

  /**
   * The readable candidates, exact name first, then by rank and name: `size` of them from `from`.
   * Counted by rank first, so only the ranks the page reaches are gathered and ordered by name.
   */
  private ranked(candidates: Int32Array, count: number, sum: Uint8Array, exactName: string | null, visible: (id: number) => boolean, from: number, size: number): { hits: SearchHit[]; total: number } {
    const { slots, found } = this;
    const exactId = exactName === null ? -1 : (this.ids.get(exactName) ?? -1);
    // Ranks are at most 16 parts × 14 halves; the exact name goes before them all (key 0).
    const keyOf = (id: number) => (id === exactId ? 0 : sum[id] + 1);
    const perKey = new Int32Array(KEYS);
    let total = 0;
    for (let i = 0; i < count; i++) {
      const id = candidates[i];
      if (!found[id] || !visible(id)) {
        sum[id] = HIDDEN;
        continue;
      }
      total++;
      perKey[keyOf(id)]++;
    }
    // The ranks the page starts and ends in: only those are gathered.
    let firstKey = 0;
    let skip = from;
    while (firstKey < KEYS && skip >= perKey[firstKey]) skip -= perKey[firstKey++];
    if (firstKey >= KEYS) return { hits: [], total };
    let lastKey = firstKey;
    for (let reached = perKey[firstKey] - skip; lastKey + 1 < KEYS && reached < size; ) reached += perKey[++lastKey];
    const groups: number[][] = [];
    for (let i = 0; i < count; i++) {
      const id = candidates[i];
      if (sum[id] === HIDDEN) continue;
      const key = keyOf(id);
      if (key >= firstKey && key <= lastKey) (groups[key] || (groups[key] = [])).push(id);
    }
    const hits: SearchHit[] = [];
    for (let key = firstKey; key <= lastKey && hits.length < size; key++) {
      const group = groups[key];
      if (!group) continue;
      for (const id of smallestByName(group, skip + size - hits.length, this.nameOrder).slice(skip)) {
        hits.push({ entry: unpackEntry(slots[id].name, slots[id].visible as PackedEntry), rank: sum[id] / 2, exact: id === exactId });
      }
      skip = 0;
    }
    return { hits, total };
  }
}

/** A package's keywords for `keywordIds`: in lower case, each once. */
function keywordsOf(entry: SearchEntry | null): string[] {
  if (!entry || !entry.keywords || entry.keywords.length === 0) return [];
  return [...new Set(entry.keywords.map((k) => k.toLowerCase()))];
}

/** Moves `id` from the lists of the keys it had to those of the keys it has (nothing when they are the same). */
function updateLists(lists: Map<string, number[]>, before: string[], after: string[], id: number): void {
  if (before.length === after.length && before.every((key, i) => key === after[i])) return;
  for (const key of before) {
    const list = lists.get(key);
    if (!list) continue;
    removeFrom(list, id);
    if (list.length === 0) lists.delete(key);
  }
  for (const key of after) {
    const list = lists.get(key);
    if (list) list.push(id);
    else lists.set(key, [id]);
  }
}

/** The people of a package for `people`: each maintainer, and who published the latest version, in lower case. */
function peopleOf(entry: SearchEntry | null): [string, number][] {
  if (!entry) return [];
  const people: [string, number][] = entry.maintainers.map((m) => [m.name.toLowerCase(), MAINTAINER]);
  if (entry.publisher) people.push([entry.publisher.name.toLowerCase(), PUBLISHER]);
  return people;
}

function sameList(a: number[] | null, b: number[] | null): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Takes one `value` out of an unordered list (the last one put in its place). */
function removeFrom(list: number[], value: number): void {
  const at = list.indexOf(value);
  if (at === -1) return;
  list[at] = list[list.length - 1];
  list.pop();
}

/** Two sorted lists of terms as one, without duplicates or terms that have no postings; and the postings of each. */
function merge(a: string[], b: string[], postings: Map<string, number[]>): [string[], number[][]] {
  const merged: string[] = [];
  const lists: number[][] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const next = j >= b.length || (i < a.length && a[i] < b[j]) ? a[i++] : b[j++];
    if (merged[merged.length - 1] === next) continue;
    const list = postings.get(next);
    if (!list) continue;
    merged.push(next);
    lists.push(list);
  }
  return [merged, lists];
}

/** The first place in `sorted` (strings, or ids of the strings in `of`) whose string is not below `value`. */
function lowerBound(sorted: string[] | number[], value: string, of?: string[]): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((of ? of[sorted[mid] as number] : sorted[mid]) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Marks the packages of one term's postings (see `matchPrefix`); returns the new count of `touched`.
 * A function of its own, small, so that the engine optimizes this innermost loop by itself.
 */
function mark(list: number[], extra: number, k: number, matched: Uint8Array, best: Uint8Array, touched: Int32Array, count: number): number {
  for (let j = 0; j < list.length; j++) count = markOne(list[j] >> 2, (list[j] & 3) * 2 + extra, k, matched, best, touched, count);
  return count;
}

/** One package matched with `rank` by the `k`th part of a query. */
function markOne(id: number, rank: number, k: number, matched: Uint8Array, best: Uint8Array, touched: Int32Array, count: number): number {
  const seen = matched[id];
  if (seen === k) {
    matched[id] = k + 1;
    best[id] = rank;
    touched[count++] = id;
  } else if (seen === k + 1 && rank < best[id]) best[id] = rank;
  return count;
}

/** The `count` ids of `group` whose names sort first (by `order`, each id's place in name order), in order, without sorting the whole group. */
function smallestByName(group: number[], count: number, order: Int32Array): number[] {
  const byName = (a: number, b: number) => order[a] - order[b];
  if (group.length <= count * 4 || group.length <= 256) return group.sort(byName).slice(0, count);
  // A max-heap of the `count` smallest seen so far.
  const heap: number[] = [];
  const larger = (i: number, j: number) => byName(heap[i], heap[j]) > 0;
  for (const id of group) {
    if (heap.length < count) {
      heap.push(id);
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!larger(i, parent)) break;
        [heap[i], heap[parent]] = [heap[parent], heap[i]];
        i = parent;
      }
    } else if (byName(id, heap[0]) < 0) {
      heap[0] = id;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let top = i;
        if (l < heap.length && larger(l, top)) top = l;
        if (r < heap.length && larger(r, top)) top = r;
        if (top === i) break;
        [heap[i], heap[top]] = [heap[top], heap[i]];
        i = top;
      }
    }
  }
  return heap.sort(byName);
}
