/**
 * `raceguard/explore/vitest`: {@link exploreTest} for Vitest.
 *
 * @packageDocumentation
 */
import { test } from 'vitest';
import { assertNonEmptyString } from '../core/validate.js';
import type { ExploreProgram } from './explore.js';
import { runExploration, splitTestOptions, type ExploreTestOptions } from './node-test.js';

/**
 * A Vitest test that explores `program` under many schedules and fails with
 * the first failing one (replay string and trace in the message).
 *
 * @example
 * ```ts
 * import { exploreTest } from 'raceguard/explore/vitest';
 *
 * exploreTest('lazy init runs once', { runs: 300 }, async (ctx) => { ... });
 * ```
 */
export function exploreTest(
  name: string,
  options: ExploreTestOptions,
  program: ExploreProgram,
): void {
  assertNonEmptyString('name', name);
  const split = splitTestOptions(options);
  test(name, async ({ signal }) => runExploration(program, split.explore, signal), split.timeoutMs);
}

export type { ExploreTestOptions };
