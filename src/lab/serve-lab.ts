/** `raceguard lab --serve`: the lab service alone, as a target for `raceguard run`. */
import {
  assertNonNegativeFinite,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { openLabDatabase } from './lab-database.js';
import { createLabServer } from './server.js';
import { SCENARIOS } from './scenarios/index.js';

/** Options of {@link serveLab}. */
export interface ServeLabOptions {
  /** Loopback port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** The awaited pause between read and write, ms. @default 2 */
  readonly gapMs?: number;
  /** Connections to PostgreSQL. @default 32 */
  readonly poolSize?: number;
  /** DATABASE_URL, or an embedded server when unset. */
  readonly databaseUrl?: string;
}

/** A running lab service. */
export interface ServedLab extends AsyncDisposable {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Start PostgreSQL (embedded unless a URL is given), a scratch schema and
 * the lab service on a loopback port; close everything with `close()`.
 *
 * @example
 * ```ts
 * await using lab = await serveLab({ gapMs: 0 });
 * const report = await runScenario(labScenarios(lab.url, { scenarios: ['inventory'] })[0]);
 * ```
 */
export async function serveLab(options: ServeLabOptions = {}): Promise<ServedLab> {
  assertPlainObject('options', options);
  if (options.port !== undefined) assertNonNegativeInteger('options.port', options.port);
  if (options.gapMs !== undefined) assertNonNegativeFinite('options.gapMs', options.gapMs);
  if (options.poolSize !== undefined) assertPositiveInteger('options.poolSize', options.poolSize);
  const database = await openLabDatabase({ databaseUrl: options.databaseUrl });
  const pool = database.newPool(options.poolSize ?? 32);
  const app = createLabServer({ pool, scenarios: SCENARIOS, gapMs: options.gapMs ?? 2 });
  let url: string;
  try {
    url = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  } catch (error) {
    await database.close();
    throw error;
  }
  const close = async (): Promise<void> => {
    await app.close();
    await database.close();
  };
  return { url, close, [Symbol.asyncDispose]: close };
}
