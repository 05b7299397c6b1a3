/**
 * The burst engine: N HTTP requests released together on warmed connections,
 * so they reach the server as close to simultaneously as the client allows.
 */
import { Pool } from 'undici';
import { RaceguardError, messageOf } from '../core/errors.js';
import { throwIfAborted } from '../core/abort.js';
import {
  assertAbortSignal,
  assertNonEmptyString,
  assertPositiveInteger,
} from '../core/validate.js';

/** One request of a burst. */
export interface BurstRequest {
  /** @default 'POST' */
  readonly method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path and query, e.g. `/orders?sku=1`. */
  readonly path: string;
  /** Sent as JSON when set. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** What came back for one request. */
export interface BurstResponse {
  /** Position of the request in the burst. */
  readonly index: number;
  /** HTTP status, or 0 when the request failed at the transport level. */
  readonly status: number;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  readonly body: unknown;
  /** From release to the complete response, in ms. */
  readonly latencyMs: number;
  /** Transport failure, when `status` is 0. */
  readonly error?: string;
}

/** The outcome of one burst. */
export interface BurstResult {
  readonly responses: readonly BurstResponse[];
  /** From release to the last response, in ms. */
  readonly durationMs: number;
  /** Time the client took to hand every request to its socket, in ms. */
  readonly sendSpreadMs: number;
}

/** Options of {@link createBurstClient}. */
export interface BurstClientOptions {
  /** Connections to open and warm; one per concurrent request. */
  readonly connections: number;
  /**
   * A cheap GET path used to open and warm every connection.
   * @default '/'
   */
  readonly warmupPath?: string;
  /** Per-request timeout in ms. @default 30000 */
  readonly timeoutMs?: number;
}

/** A failure to prepare the burst connections. */
export class BurstError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_BURST_FAILED', message, { cause });
  }
}

/** Fires bursts over a fixed set of warmed keep-alive connections. */
export interface BurstClient extends AsyncDisposable {
  /**
   * Release all `requests` at once and collect every response. `signal` is
   * checked before the release; once released, a burst runs to completion
   * (each request is bounded by `timeoutMs`).
   */
  fire(
    requests: readonly BurstRequest[],
    options?: { readonly signal?: AbortSignal },
  ): Promise<BurstResult>;
  close(): Promise<void>;
}

/**
 * Open `connections` keep-alive connections to `origin` and warm each with a
 * request, so that a later burst pays no connection set-up and every request
 * leaves on its own socket in the same event-loop turn.
 *
 * @example
 * ```ts
 * await using client = await createBurstClient('http://127.0.0.1:3000', { connections: 100 });
 * const { responses } = await client.fire(
 *   Array.from({ length: 100 }, (_, i) => ({ path: '/buy', body: { user: i } })),
 * );
 * ```
 */
export async function createBurstClient(
  origin: string,
  options: BurstClientOptions,
): Promise<BurstClient> {
  assertNonEmptyString('origin', origin);
  assertPositiveInteger('options.connections', options.connections);
  const warmupPath = options.warmupPath ?? '/';
  const timeoutMs = options.timeoutMs ?? 30_000;
  assertPositiveInteger('options.timeoutMs', timeoutMs);
  const pool = new Pool(origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 120_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });

  // Concurrent requests force the pool to open one socket each.
  for (let round = 0; round < 3 && pool.stats.connected < options.connections; round++) {
    try {
      await Promise.all(
        Array.from({ length: options.connections }, async () => {
          const { body } = await pool.request({ method: 'GET', path: warmupPath });
          await body.dump();
        }),
      );
    } catch (error) {
      await pool.close();
      throw new BurstError(`could not warm connections to ${origin}: ${messageOf(error)}`, error);
    }
  }

  const fire = async (
    requests: readonly BurstRequest[],
    fireOptions: { readonly signal?: AbortSignal } = {},
  ): Promise<BurstResult> => {
    assertAbortSignal('options.signal', fireOptions.signal);
    throwIfAborted(fireOptions.signal);
    if (requests.length > options.connections) {
      throw new BurstError(
        `a burst of ${requests.length} requests needs as many connections; this client has ${options.connections}`,
      );
    }
    // Everything is serialised before the release, so the loop below only dispatches.
    const prepared = requests.map((r) => ({
      method: r.method ?? 'POST',
      path: r.path,
      headers: {
        ...(r.body !== undefined && { 'content-type': 'application/json' }),
        ...r.headers,
      },
      body: r.body === undefined ? null : JSON.stringify(r.body),
    }));
    const started = performance.now();
    let lastDispatch = started;
    const pending = prepared.map(async (request, index): Promise<BurstResponse> => {
      const promise = pool.request(request);
      lastDispatch = performance.now();
      try {
        const response = await promise;
        const text = await response.body.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        return { index, status: response.statusCode, body, latencyMs: performance.now() - started };
      } catch (error) {
        return {
          index,
          status: 0,
          body: undefined,
          latencyMs: performance.now() - started,
          error: messageOf(error),
        };
      }
    });
    const sendSpreadMs = lastDispatch - started;
    const responses = await Promise.all(pending);
    return { responses, durationMs: performance.now() - started, sendSpreadMs };
  };

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= pool.close());
  return { fire, close, [Symbol.asyncDispose]: close };
}
