import { test } from 'node:test';
import { assertNonEmptyString, assertPlainObject } from '../core/validate.js';
import { explore, exploreSettings, type ExploreOptions, type ExploreProgram } from './explore.js';

/** Options of {@link exploreTest}: {@link ExploreOptions} plus the test's own timeout. */
export interface ExploreTestOptions extends ExploreOptions {
  /**
   * The test's timeout in ms (passed to the test runner).
   * @default no timeout beyond the runner's
   */
  readonly timeoutMs?: number;
}

/** Splits the test's own options from the explorer's and validates both at registration. */
export function splitTestOptions(options: ExploreTestOptions): {
  readonly explore: ExploreOptions;
  readonly timeoutMs: number | undefined;
} {
  assertPlainObject('options', options);
  const { timeoutMs, ...rest } = options;
  exploreSettings(rest); // refuse bad options when the test is declared, not when it runs
  return { explore: rest, timeoutMs };
}

/** Runs the explorer inside a test and throws its failure (replay string and trace in the message). */
export async function runExploration(
  program: ExploreProgram,
  options: ExploreOptions,
  signal: AbortSignal | undefined,
): Promise<void> {
  const signals = [signal, options.signal].filter((one): one is AbortSignal => one !== undefined);
  const combined = signals.length === 0 ? undefined : AbortSignal.any(signals);
  const report = await explore(
    program,
    combined === undefined ? options : { ...options, signal: combined },
  );
  if (report.failure !== undefined) throw report.failure;
}

/**
 * A `node:test` test that explores `program` under many schedules and fails
 * with the first failing one: its message carries the replay string (pass it
 * back as `{ replay }`) and the interleaving.
 *
 * @example
 * ```ts
 * import { exploreTest } from 'raceguard/explore';
 *
 * exploreTest('two buyers never oversell', { runs: 500 }, async (ctx) => {
 *   const db = ctx.wrap(pool);
 *   const buy = () => db.query('UPDATE items SET stock = stock - 1 WHERE id = 1 AND stock > 0');
 *   await Promise.all([ctx.spawn('a', buy), ctx.spawn('b', buy)]);
 * });
 * ```
 */
export function exploreTest(
  name: string,
  options: ExploreTestOptions,
  program: ExploreProgram,
): void {
  assertNonEmptyString('name', name);
  const split = splitTestOptions(options);
  void test(name, split.timeoutMs === undefined ? {} : { timeout: split.timeoutMs }, (context) =>
    runExploration(program, split.explore, context.signal),
  );
}
