/**
 * The lab's burst interface: N HTTP requests with JSON bodies released
 * together on warmed connections, by the last-byte synchronisation engine of
 * `raceguard run`.
 */
import { RaceguardError, throwIfAborted } from 'raceguard';
import { Http1BurstClient } from '../index.js';
import { checkInteger, checkShape } from './checks.js';

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
 * request, so that a later burst pays no connection set-up. Bursts are
 * released by HTTP/1.1 last-byte synchronisation (the engine of
 * `raceguard run`): every request is sent but its final byte, then all final
 * bytes together.
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
  checkShape('origin', origin, 'string');
  checkInteger('options.connections', options.connections, 1);
  const warmupPath = options.warmupPath ?? '/';
  const timeoutMs = options.timeoutMs ?? 30_000;
  checkInteger('options.timeoutMs', timeoutMs, 1);
  let client: Http1BurstClient;
  try {
    client = await Http1BurstClient.open(origin, {
      connections: options.connections,
      warmupPath,
      timeoutMs,
    });
  } catch (error) {
    throw new BurstError(error instanceof Error ? error.message : String(error), error);
  }

  const fire = async (
    requests: readonly BurstRequest[],
    fireOptions: { readonly signal?: AbortSignal } = {},
  ): Promise<BurstResult> => {
    checkShape('options.signal', fireOptions.signal, 'signal?');
    throwIfAborted(fireOptions.signal);
    if (requests.length > options.connections) {
      throw new BurstError(
        `a burst of ${requests.length} requests needs as many connections; this client has ${options.connections}`,
      );
    }
    const burst = await client.fire(
      requests.map((r) => ({
        method: r.method ?? 'POST',
        path: r.path,
        headers: {
          ...(r.body !== undefined && { 'content-type': 'application/json' }),
          ...r.headers,
        },
        ...(r.body !== undefined && { body: JSON.stringify(r.body) }),
      })),
    );
    const responses = burst.responses.map((r): BurstResponse => {
      let body: unknown = r.text;
      try {
        body = JSON.parse(r.text);
      } catch {
        // not JSON: keep the text
      }
      return {
        index: r.index,
        status: r.status,
        body: r.status === 0 ? undefined : body,
        latencyMs: r.latencyMs,
        ...(r.error !== undefined && { error: r.error }),
      };
    });
    return { responses, durationMs: burst.durationMs, sendSpreadMs: burst.sendSpreadMs };
  };

  const close = (): Promise<void> => {
    client.close();
    return Promise.resolve();
  };
  return { fire, close, [Symbol.asyncDispose]: close };
}
