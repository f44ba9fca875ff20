/** The words a package is found by, shared by the `search` view (indexing) and the search endpoint (querying). */

/** The lower-case terms of `text`: runs of letters, digits and "@", 2 to 64 characters long. */
export function terms(text: string): string[] {
  return text.toLowerCase().split(/[^a-z0-9@]+/).filter((t) => t.length > 1 && t.length <= 64);
}
