import * as fs from 'node:fs';
import * as path from 'node:path';

/** Shared test data (goldens, tokenizer, oracle) lives outside the project: FLASH_MPT_TEST_DATA or ../shared. */
export const TEST_DATA = path.resolve(process.env.FLASH_MPT_TEST_DATA ?? path.join(__dirname, '..', '..', '..', 'shared'));

export function sharedPath(...parts: string[]): string {
  return path.join(TEST_DATA, ...parts);
}

/**
 * `describe` when the shared data is present, otherwise one skipped test whose title says why (the suite body is not
 * run: tables built from the data, as in `describe.each`, would be empty).
 */
export function describeWithData(title: string, relPath: string, fn: () => void): void {
  if (fs.existsSync(sharedPath(relPath))) {
    describe(title, fn);
  } else {
    test.skip(`${title} (skipped: ${sharedPath(relPath)} not found; set FLASH_MPT_TEST_DATA)`, () => undefined);
  }
}
