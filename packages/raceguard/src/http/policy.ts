/**
 * The HTTP semantics of idempotency keys, shared by the Fastify, Express
 * and Hono adapters: which requests need a key, how the header is read,
 * which responses are stored and replayed, and the problem+json (RFC 9457)
 * answers of the IETF draft "The Idempotency-Key HTTP Header Field".
 */
import { InvalidArgumentError } from '../core/errors.js';
import {
  assertFunction,
  assertKnownOptions,
  assertOneOf,
  assertPlainObject,
} from '../core/validate.js';
import {
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  IdempotencyStoreError,
  InvalidIdempotencyKeyError,
} from '../idempotency/errors.js';
import { fingerprintRequest, type RequestShape } from '../idempotency/fingerprint.js';
import {
  claimPrepared,
  prepareIdempotency,
  type ConcurrentPolicy,
  type Execution,
  type PreparedIdempotency,
} from '../idempotency/idempotent.js';
import { parseIdempotencyKeyHeader } from '../idempotency/key.js';
import type { IdempotencyStore } from '../idempotency/store.js';

/** Response headers replayed by default; everything else (cookies above all) is not stored. */
export const DEFAULT_REPLAY_HEADERS: readonly string[] = [
  'content-type',
  'content-language',
  'content-location',
  'location',
  'etag',
  'last-modified',
  'link',
  'cache-control',
];

/** The 4xx responses stored by default: final answers that a retry of the same request would only repeat. */
export const DEFAULT_STORED_CLIENT_ERRORS: readonly number[] = [
  400, 403, 404, 405, 406, 410, 411, 413, 414, 415, 416, 422,
];

/** The default of {@link HttpIdempotencyOptions.storeStatus}. */
export function isFinalOutcome(status: number): boolean {
  return (status >= 200 && status < 300) || DEFAULT_STORED_CLIENT_ERRORS.includes(status);
}

/** Options shared by every HTTP adapter; `Req` is the framework's request. */
export interface HttpIdempotencyOptions<Req> {
  /** Where records live: `MemoryIdempotencyStore`, `PostgresIdempotencyStore`, `RedisIdempotencyStore`. */
  readonly store: IdempotencyStore;
  /**
   * The caller's identity (tenant, user, API client), read from the
   * authenticated request. Required: records are always scoped by it, so one
   * caller can never replay another's response. Return a constant only if
   * the API has a single caller.
   */
  readonly scope: (request: Req) => string | Promise<string>;
  /** Methods the middleware guards. @default ['POST', 'PATCH'] */
  readonly methods?: readonly string[];
  /** Refuse a guarded request without a key (400). If `false`, such requests pass through unguarded. @default true */
  readonly required?: boolean;
  /** The request header that carries the key. @default 'Idempotency-Key' */
  readonly header?: string;
  /**
   * `'ietf'`: the draft's statuses (422 when a key is reused with another
   * payload). `'stripe'`: Stripe's (400 for that case).
   * @default 'ietf'
   */
  readonly mode?: 'ietf' | 'stripe';
  /** Concurrent duplicates: 409 at once, or wait for the first response. @default 'conflict' */
  readonly concurrent?: ConcurrentPolicy;
  /** Longest wait with `concurrent: 'wait'`. @default 30000 */
  readonly waitMs?: number;
  /** Claim lease (renewed while the handler runs; frees a crashed server's claims). @default 30000 */
  readonly leaseMs?: number;
  /** How long a response is kept for replay (publish it to clients). @default 86400000 (24 h) */
  readonly ttlMs?: number;
  /**
   * Longest wait for one store call; a store that does not answer in time
   * fails closed (503 before the handler) or leaves the record to its lease
   * (after it). See docs/idempotency.md for the client settings that make
   * a store fail fast.
   * @default 5000
   */
  readonly callTimeoutMs?: number;
  /** Longest key accepted. @default 255 */
  readonly maxKeyLength?: number;
  /** Also store 5xx responses (by default they are not, so a retry runs again). @default false */
  readonly storeServerErrors?: boolean;
  /**
   * Which responses are stored and replayed. By default the final outcomes:
   * every 2xx and the 4xx that a retry would only repeat
   * ({@link DEFAULT_STORED_CLIENT_ERRORS}); not 3xx, nor the 4xx that say
   * "try again" (408, 409, 425, 429) or depend on the caller's credentials
   * (401), so a retry runs again. 5xx follow `storeServerErrors`.
   * @default (status) => (status >= 200 && status < 300) || DEFAULT_STORED_CLIENT_ERRORS.includes(status)
   */
  readonly storeStatus?: (status: number) => boolean;
  /** Store down before the handler ran: 503 (`false`) or run unguarded (`true`). @default false */
  readonly failOpen?: boolean;
  /** Replace the default fingerprint (method, URL and canonical JSON body). */
  readonly fingerprint?: (request: Req, shape: RequestShape) => string;
  /** Response headers stored and replayed. @default DEFAULT_REPLAY_HEADERS */
  readonly replayHeaders?: readonly string[];
  /**
   * Hears a store failure after the handler ran. The response is still
   * sent; its record is left to its lease. Fastify logs it by default.
   */
  readonly onError?: (error: Error, request: Req) => void;
}

/** A response as stored for replay. */
export interface StoredHttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body, as text or, when `base64` is set, as base64 of its bytes. */
  readonly body: string;
  readonly base64?: boolean;
}

/** A response the middleware sends itself: a replay or a problem. */
export interface ImmediateResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | Buffer;
}

/** What the middleware decided for one request. */
export type Decision =
  | { readonly kind: 'pass' }
  | { readonly kind: 'respond'; readonly response: ImmediateResponse }
  | { readonly kind: 'proceed'; readonly execution: Execution<StoredHttpResponse> };

/** The stable `type` URIs of the problem responses. */
export const PROBLEM_TYPES = {
  keyMissing: 'urn:raceguard:problem:idempotency-key-missing',
  keyInvalid: 'urn:raceguard:problem:idempotency-key-invalid',
  inFlight: 'urn:raceguard:problem:idempotency-request-in-flight',
  keyReused: 'urn:raceguard:problem:idempotency-key-reused',
  storeUnavailable: 'urn:raceguard:problem:idempotency-store-unavailable',
} as const;

/** The options, checked once when the middleware is created. */
export interface HttpPolicy<Req> {
  readonly options: HttpIdempotencyOptions<Req>;
  readonly methods: ReadonlySet<string>;
  readonly header: string;
  readonly replayHeaders: ReadonlySet<string>;
  /** The claim options that do not change per request, checked once (see `prepareIdempotency`). */
  readonly prepared: PreparedIdempotency;
}

const HTTP_OPTIONS: ReadonlySet<string> = new Set([
  'store',
  'scope',
  'methods',
  'required',
  'header',
  'mode',
  'concurrent',
  'waitMs',
  'leaseMs',
  'ttlMs',
  'callTimeoutMs',
  'maxKeyLength',
  'storeServerErrors',
  'storeStatus',
  'failOpen',
  'fingerprint',
  'replayHeaders',
  'onError',
]);

/** Validate the options of an adapter; throws InvalidArgumentError at start-up, never per request. */
export function createPolicy<Req>(options: HttpIdempotencyOptions<Req>): HttpPolicy<Req> {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, HTTP_OPTIONS, {
    storeFailure: "unset: it is called failOpen (true for 'open'), as in the cache",
    storeTimeoutMs:
      "unset: it is called callTimeoutMs, the one name of a round trip's timeout on every backend",
  });
  const { store } = options;
  if (typeof store !== 'object' || store === null || typeof store.claim !== 'function') {
    throw new InvalidArgumentError('options.store', 'an IdempotencyStore', store);
  }
  assertFunction('options.scope', options.scope);
  if (options.fingerprint !== undefined) assertFunction('options.fingerprint', options.fingerprint);
  if (options.onError !== undefined) assertFunction('options.onError', options.onError);
  if (options.storeStatus !== undefined) assertFunction('options.storeStatus', options.storeStatus);
  assertOneOf('options.mode', options.mode ?? 'ietf', ['ietf', 'stripe']);
  // The claim options (concurrent, waits, lease, TTL, key length, failOpen,
  // callTimeoutMs): checked once here, with their defaults, so a bad set
  // fails at start-up and not on every request.
  const prepared = prepareIdempotency(store, options);
  const methods: readonly unknown[] = options.methods ?? ['POST', 'PATCH'];
  if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string' || m === '')) {
    throw new InvalidArgumentError('options.methods', 'an array of HTTP method names', methods);
  }
  const header = options.header ?? 'Idempotency-Key';
  if (typeof header !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(header)) {
    throw new InvalidArgumentError('options.header', 'an HTTP header name', header);
  }
  const replayList: readonly unknown[] = options.replayHeaders ?? DEFAULT_REPLAY_HEADERS;
  if (!Array.isArray(replayList) || replayList.some((h) => typeof h !== 'string')) {
    throw new InvalidArgumentError('options.replayHeaders', 'an array of header names', replayList);
  }
  const replay = replayList as readonly string[];
  if (replay.some((h) => h.toLowerCase() === 'set-cookie')) {
    throw new InvalidArgumentError(
      'options.replayHeaders',
      'a list without set-cookie (a replayed cookie would hand one session to another request)',
      replay,
    );
  }
  return {
    options,
    methods: new Set((methods as readonly string[]).map((m) => m.toUpperCase())),
    header: header.toLowerCase(),
    replayHeaders: new Set(replay.map((h) => h.toLowerCase())),
    prepared,
  };
}

/** A problem+json response (RFC 9457). */
export function problem(
  status: number,
  type: string,
  title: string,
  detail: string,
  headers: Record<string, string> = {},
): ImmediateResponse {
  return {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
    body: JSON.stringify({ type, title, status, detail }),
  };
}

/** The request as the policy needs it, read by each adapter from its framework. */
export interface RequestInfo<Req> {
  readonly request: Req;
  readonly method: string;
  readonly url: string;
  readonly headerValue: string | readonly string[] | undefined;
  readonly body: unknown;
}

/**
 * Decide what to do with one request: pass it through, answer it (replay
 * or problem), or let it run under a claim.
 */
export async function decide<Req>(
  policy: HttpPolicy<Req>,
  info: RequestInfo<Req>,
): Promise<Decision> {
  const { options } = policy;
  if (!policy.methods.has(info.method.toUpperCase())) return { kind: 'pass' };
  let key: string | undefined;
  try {
    key = parseIdempotencyKeyHeader(info.headerValue, {
      maxLength: policy.prepared.maxKeyLength,
    });
  } catch (error) {
    if (!(error instanceof InvalidIdempotencyKeyError)) throw error;
    return {
      kind: 'respond',
      response: problem(400, PROBLEM_TYPES.keyInvalid, 'Invalid Idempotency-Key', error.message),
    };
  }
  if (key === undefined) {
    if (options.required === false) return { kind: 'pass' };
    return {
      kind: 'respond',
      response: problem(
        400,
        PROBLEM_TYPES.keyMissing,
        'Idempotency-Key is missing',
        `This operation is idempotent and requires the ${policy.header} header.`,
      ),
    };
  }
  // Awaited only when it is a promise: an await costs a tick on every request.
  const scoped = options.scope(info.request);
  const scope = typeof scoped === 'string' ? scoped : await scoped;
  if (typeof scope !== 'string' || scope.length === 0) {
    throw new InvalidArgumentError('options.scope()', 'a non-empty string', scope);
  }
  const shape: RequestShape = { method: info.method, url: info.url, body: info.body };
  const fingerprint =
    options.fingerprint !== undefined
      ? options.fingerprint(info.request, shape)
      : fingerprintRequest(shape);
  try {
    const claim = await claimPrepared<StoredHttpResponse>(policy.prepared, {
      scope,
      key,
      fingerprint,
    });
    if (claim.kind === 'execute') return { kind: 'proceed', execution: claim };
    const stored = claim.value;
    return {
      kind: 'respond',
      response: {
        status: stored.status,
        headers: { ...stored.headers, 'idempotent-replayed': 'true' },
        body: stored.base64 === true ? Buffer.from(stored.body, 'base64') : stored.body,
      },
    };
  } catch (error) {
    return { kind: 'respond', response: problemFor(error, options.mode ?? 'ietf') };
  }
}

function problemFor(error: unknown, mode: 'ietf' | 'stripe'): ImmediateResponse {
  if (error instanceof IdempotencyInFlightError) {
    return problem(
      409,
      PROBLEM_TYPES.inFlight,
      'A request with this Idempotency-Key is being processed',
      'The first request with this key has not finished; retry later to receive its response.',
      { 'retry-after': String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))) },
    );
  }
  if (error instanceof IdempotencyKeyReusedError) {
    return problem(
      mode === 'stripe' ? 400 : 422,
      PROBLEM_TYPES.keyReused,
      'Idempotency-Key reused with a different request',
      'This key was already used with a different method, URL or body; use a new key for a new request.',
    );
  }
  if (error instanceof IdempotencyStoreError) {
    return problem(
      503,
      PROBLEM_TYPES.storeUnavailable,
      'Idempotency store unavailable',
      'The request was not processed because duplicates could not be ruled out; retry later.',
      { 'retry-after': '1' },
    );
  }
  throw error;
}

/** Whether a response with this status is stored for replay. */
export function isStorable<Req>(policy: HttpPolicy<Req>, status: number): boolean {
  if (status >= 500) return policy.options.storeServerErrors === true;
  return (policy.options.storeStatus ?? isFinalOutcome)(status);
}

/**
 * Store the response the handler produced (if the policy stores its status)
 * and end the claim; otherwise drop the claim so a retry runs again. Never
 * throws: a failed store write leaves the claim to run out its lease, and
 * `onError` hears about it.
 */
export async function finish<Req>(
  policy: HttpPolicy<Req>,
  execution: Execution<StoredHttpResponse>,
  response: {
    readonly status: number;
    readonly headers: Readonly<Record<string, unknown>>;
    readonly body: string | Uint8Array | undefined;
  },
): Promise<Error | undefined> {
  try {
    if (!isStorable(policy, response.status)) {
      await execution.abandon();
      return undefined;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      const lower = name.toLowerCase();
      if (!policy.replayHeaders.has(lower) || value === undefined) continue;
      headers[lower] = Array.isArray(value)
        ? value.map(String).join(', ')
        : typeof value === 'string' || typeof value === 'number'
          ? String(value)
          : JSON.stringify(value);
    }
    const { body } = response;
    const stored: StoredHttpResponse =
      body === undefined
        ? { status: response.status, headers, body: '' }
        : typeof body === 'string'
          ? { status: response.status, headers, body }
          : {
              status: response.status,
              headers,
              body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'),
              base64: true,
            };
    await execution.complete(stored);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
