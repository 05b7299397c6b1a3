/**
 * The one read-compute-write loop behind every dialect's `optimisticUpdate`:
 * read the row, let the caller compute changes, write them only if the
 * version is unchanged, and on a lost race re-read and try again (the
 * retry policy's back-off). A dialect supplies only its two round trips.
 */
import { OptimisticConflictError, RetryExhaustedError, RowNotFoundError } from './errors.js';
import { retry } from './retry.js';
import { retryOptionsOf } from './retry-policy.js';
import type { OptimisticResultOf, OptimisticUpdateOf } from './row-updates.js';
import { assertAbortSignal, assertFunction, assertPlainObject, assertVersion } from './validate.js';

type AnyRow = Readonly<Record<string, unknown>>;

/** A dialect's round trips for {@link optimisticLoop}. */
export interface VersionedRowTrips<R extends AnyRow> {
  /** The quoted table, for errors. */
  readonly table: string;
  /** Reads the row; `undefined` when no row matches. */
  read(): Promise<R | undefined>;
  /** One version-checked write; the row after it, or `undefined` when the version moved. */
  write(
    current: R,
    expectedVersion: number | string | bigint,
    changes: AnyRow,
  ): Promise<R | undefined>;
  /**
   * Called before computing when a read sees the very version the previous
   * write lost against (the reads come from a snapshot that cannot move);
   * throw to stop the loop. Unset: keep trying.
   */
  readonly sameVersionAgain?: (version: number | string | bigint) => never;
}

/** The argument checks of every `optimisticUpdate`, after its client's. */
export function assertOptimisticOptions(options: object): void {
  assertPlainObject('options', options);
  const { update, signal } = options as { update?: unknown; signal?: unknown };
  assertFunction('options.update', update);
  assertAbortSignal('options.signal', signal);
}

class VersionMoved extends Error {
  /** Named so in retry events. */
  readonly code = 'version-moved';
  constructor() {
    super('the version changed between read and write');
  }
}

/**
 * Runs the optimistic loop of `options` over `trips`. Throws
 * `RowNotFoundError` when no row matches and `OptimisticConflictError`
 * (with the row as read last) when attempts run out.
 */
export async function optimisticLoop<R extends AnyRow>(
  options: OptimisticUpdateOf<R, unknown, Readonly<Record<string, unknown>>>,
  versionColumn: string,
  trips: VersionedRowTrips<R>,
): Promise<OptimisticResultOf<R>> {
  const started = performance.now();
  let lastRead: R | undefined;
  // The version the last write lost against.
  let lost: string | undefined;
  try {
    return await retry(
      async ({ attempt }) => {
        const current = await trips.read();
        if (current === undefined) throw new RowNotFoundError(trips.table, options.key);
        lastRead = current;
        const expectedVersion = current[versionColumn];
        // A version column of the wrong type is a schema mistake, named before anything is written.
        assertVersion(`the version column "${versionColumn}" of ${trips.table}`, expectedVersion);
        if (lost !== undefined && String(expectedVersion) === lost) {
          trips.sameVersionAgain?.(expectedVersion);
        }
        const changes = await options.update(current, { attempt });
        if (changes === null) return { applied: false, row: current, attempts: attempt };
        const written = await trips.write(current, expectedVersion, changes);
        if (written === undefined) {
          lost = String(expectedVersion);
          throw new VersionMoved();
        }
        return { applied: true, row: written, attempts: attempt };
      },
      retryOptionsOf(options, (error) => error instanceof VersionMoved, 'optimistic-update'),
    );
  } catch (error) {
    if (error instanceof RetryExhaustedError) {
      const fresh = await trips.read().catch(() => lastRead);
      throw new OptimisticConflictError(
        fresh,
        error.attempts,
        performance.now() - started,
        error.cause,
      );
    }
    throw error;
  }
}
