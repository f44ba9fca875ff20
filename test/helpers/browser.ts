/**
 * Debian's Chromium, driven by playwright-core, for the tests that use a real browser. CI installs
 * it (.ci/run); elsewhere those tests are skipped with a notice.
 */
import { existsSync } from 'fs';
import { Browser, chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

/** `describe` when Chromium is there (or on CI, where its absence must fail), else `describe.skip` with a notice. */
export function describeWithBrowser(what: string): jest.Describe {
  if (!haveChromium && !process.env.CI) console.warn('Chromium is not installed (' + CHROMIUM + '): skipping ' + what);
  return haveChromium || process.env.CI ? describe : describe.skip;
}

/** A headless Chromium started as this machine allows it (no sandbox as root, no background networking). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
