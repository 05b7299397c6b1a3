/**
 * HTTP conditional writes (RFC 9110 §13, RFC 6585 §3): a strong `ETag` on
 * reads from the resource's version, `If-Match` required on writes of
 * versioned resources (428 when missing), 412 with problem+json and the
 * current `ETag` on a mismatch, and the write done with the version check in
 * the same statement by a {@link VersionStore} (`versionedRows` of
 * `raceguard/postgres` is one). Framework-free: each function returns the
 * response to send; `sendFastify`, `sendExpress` and `toResponse` (Hono,
 * fetch) send it.
 */
import type { ServerResponse } from 'node:http';
import { InvalidArgumentError } from '../core/errors.js';
import { FieldNotWritableError } from '../core/versioned-store.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { problem, type ImmediateResponse } from './policy.js';

/** A row and its version (a decimal string: bigint-safe). */
export interface Versioned<R> {
  readonly row: R;
  readonly version: string;
}

/**
 * Where versioned resources live. Every write checks the version in the
 * same statement that writes (no read-then-write window).
 */
export interface VersionStore<K, R> {
  read(key: K): Promise<Versioned<R> | undefined>;
  /** Writes `changes` if the version is still `expectedVersion`; else returns what is there now. */
  update(
    key: K,
    expectedVersion: string,
    changes: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly applied: true; readonly current: Versioned<R> }
    | { readonly applied: false; readonly current: Versioned<R> | undefined }
  >;
  /** Deletes if the version is still `expectedVersion`; else returns what is there now. */
  delete(
    key: K,
    expectedVersion: string,
  ): Promise<
    | { readonly applied: true }
    | { readonly applied: false; readonly current: Versioned<R> | undefined }
  >;
  /** Creates if absent; else returns what is there. */
  create(
    key: K,
    values: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly created: true; readonly current: Versioned<R> }
    | { readonly created: false; readonly current: Versioned<R> }
  >;
}

/** Problem types of the conditional-write responses. */
export const CONDITIONAL_PROBLEMS = {
  preconditionRequired: 'urn:raceguard:problem:precondition-required',
  preconditionFailed: 'urn:raceguard:problem:precondition-failed',
  badPrecondition: 'urn:raceguard:problem:malformed-precondition',
  notFound: 'urn:raceguard:problem:not-found',
  alreadyExists: 'urn:raceguard:problem:already-exists',
  badBody: 'urn:raceguard:problem:bad-body',
} as const;

/** Options of {@link conditionalWrites}. */
export interface ConditionalWriteOptions {
  /**
   * Refuse a write without `If-Match` (428 Precondition Required): a client
   * that did not say which version it edited could overwrite a change it
   * never saw.
   * @default true
   */
  readonly requireIfMatch?: boolean;
  /**
   * Attempts of a write whose condition matched but whose version moved
   * before the write (only with `If-Match: *` or a list of tags).
   * @default 3
   */
  readonly maxAttempts?: number;
}

/** A parsed entity tag. */
interface EntityTag {
  readonly weak: boolean;
  readonly opaque: string;
}

/**
 * The strong ETag of a version: `"<version>"`.
 *
 * @example
 * ```ts
 * reply.header('etag', etagOf(row.version)); // "3"
 * ```
 */
export function etagOf(version: string | number | bigint): string {
  const text = String(version);
  if (!/^[\x21\x23-\x7e]+$/.test(text))
    throw new InvalidArgumentError('version', 'printable ASCII without quotes', version);
  return `"${text}"`;
}

/**
 * Reads an `If-Match` / `If-None-Match` value: `*` or a list of entity tags;
 * throws {@link InvalidArgumentError} on a malformed one.
 *
 * @example
 * ```ts
 * parseEntityTags('W/"2", "3"'); // [{ weak: true, opaque: '2' }, { weak: false, opaque: '3' }]
 * ```
 */
export function parseEntityTags(header: string): '*' | EntityTag[] {
  if (header.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  // RFC 9110 §5.6.1: a list may hold empty elements (`"1", , "2"`), to be
  // skipped; commas may sit inside an opaque tag, so tags are read whole.
  const malformed = (): InvalidArgumentError =>
    new InvalidArgumentError('If-Match', 'a list of entity tags like "3" or W/"3", or *', header);
  let at = 0;
  for (;;) {
    while (at < header.length && /[\s,]/.test(header[at]!)) at++;
    if (at >= header.length) break;
    const match = /^(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"/.exec(header.slice(at));
    if (match === null) throw malformed();
    tags.push({ weak: match[1] !== undefined, opaque: match[2]! });
    at += match[0].length;
    // A tag ends the element: only whitespace may come before the next comma.
    while (at < header.length && /[ \t]/.test(header[at]!)) at++;
    if (at < header.length && header[at] !== ',') throw malformed();
  }
  if (tags.length === 0)
    throw new InvalidArgumentError('If-Match', 'at least one entity tag', header);
  return tags;
}

const withEtag = (versioned: Versioned<unknown>): Record<string, string> => ({
  etag: etagOf(versioned.version),
});

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): ImmediateResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  };
}

const failed = (current: Versioned<unknown> | undefined): ImmediateResponse =>
  problem(
    412,
    CONDITIONAL_PROBLEMS.preconditionFailed,
    'Precondition Failed',
    current === undefined
      ? 'The resource does not exist.'
      : `The resource changed since you read it; its current ETag is ${etagOf(current.version)}. Read it again and reapply your change.`,
    current === undefined ? {} : withEtag(current),
  );

const headerOf = (value: string | readonly string[] | undefined): string | undefined =>
  Array.isArray(value) ? value.join(', ') : (value as string | undefined);

/** What the conditional-write helpers need of a request. */
export interface ConditionalHeaders {
  readonly 'if-match'?: string | readonly string[] | undefined;
  readonly 'if-none-match'?: string | readonly string[] | undefined;
}

/** The helpers for one kind of versioned resource. */
export interface ConditionalWrites<K> {
  /** GET: 200 with the row and its ETag, 304 when `If-None-Match` names it, 404 when absent. */
  read(key: K, headers: ConditionalHeaders): Promise<ImmediateResponse>;
  /** PUT/PATCH: 200 with the new row and ETag; 428, 412 (with the current ETag), 400 on a malformed header. */
  update(
    key: K,
    changes: Readonly<Record<string, unknown>>,
    headers: ConditionalHeaders,
  ): Promise<ImmediateResponse>;
  /** DELETE: 204; 428, 412, 400 as for `update`. */
  delete(key: K, headers: ConditionalHeaders): Promise<ImmediateResponse>;
  /** POST/PUT to create: 201 with the row and ETag; with `If-None-Match: *` an existing resource is 412, without it 409. */
  create(
    key: K,
    values: Readonly<Record<string, unknown>>,
    headers: ConditionalHeaders,
  ): Promise<ImmediateResponse>;
}

/**
 * Conditional reads and writes of the resources in `store`.
 *
 * @example
 * ```ts
 * const documents = conditionalWrites(versionedRows(pool, { table: 'documents' }));
 * app.get('/documents/:id', async (req, reply) => sendFastify(reply, await documents.read({ id: req.params.id }, req.headers)));
 * app.put('/documents/:id', async (req, reply) =>
 *   sendFastify(reply, await documents.update({ id: req.params.id }, req.body, req.headers)));
 * ```
 */
export function conditionalWrites<K, R>(
  store: VersionStore<K, R>,
  options: ConditionalWriteOptions = {},
): ConditionalWrites<K> {
  const policy = checkConditionalOptions(store, options);
  return {
    read: (key, headers) => readConditionally(store, key, headers),
    async update(key, changes, headers) {
      if (!isFields(changes)) return badBody();
      return notWritable(() =>
        underPrecondition(store, policy, key, headers, async (version) => {
          const result = await store.update(key, version, changes);
          return result.applied
            ? json(200, result.current.row, withEtag(result.current))
            : undefined;
        }),
      );
    },
    delete(key, headers) {
      return underPrecondition(store, policy, key, headers, async (version) => {
        const result = await store.delete(key, version);
        return result.applied ? { status: 204, headers: {}, body: '' } : undefined;
      });
    },
    create: (key, values, headers) => createConditionally(store, key, values, headers),
  };
}

/** The options of {@link conditionalWrites}, checked, with defaults. */
interface ConditionalPolicy {
  readonly requireIfMatch: boolean;
  readonly maxAttempts: number;
}

function checkConditionalOptions<K, R>(
  store: VersionStore<K, R>,
  options: ConditionalWriteOptions,
): ConditionalPolicy {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['requireIfMatch', 'maxAttempts']));
  for (const method of ['read', 'update', 'delete', 'create'] as const) {
    if (
      typeof (store as unknown as Partial<Record<string, unknown>> | undefined)?.[method] !==
      'function'
    ) {
      throw new InvalidArgumentError(
        'store',
        `a VersionStore (read, update, delete, create); ${method} is missing`,
        store,
      );
    }
  }
  const requireIfMatch = options.requireIfMatch ?? true;
  if (typeof requireIfMatch !== 'boolean')
    throw new InvalidArgumentError('options.requireIfMatch', 'a boolean', requireIfMatch);
  const maxAttempts = options.maxAttempts ?? 3;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidArgumentError('options.maxAttempts', 'a positive integer', maxAttempts);
  }
  return { requireIfMatch, maxAttempts };
}

/** The precondition of a write (`undefined`: none, and none is required), or the response that ends the request. */
function preconditionOf(
  headers: ConditionalHeaders,
  requireIfMatch: boolean,
): '*' | EntityTag[] | undefined | ImmediateResponse {
  const header = headerOf(headers['if-match']);
  if (header === undefined) {
    return requireIfMatch
      ? problem(
          428,
          CONDITIONAL_PROBLEMS.preconditionRequired,
          'Precondition Required',
          'Send If-Match with the ETag of the version you read, so that a change you never saw is not overwritten.',
        )
      : undefined;
  }
  try {
    return parseEntityTags(header);
  } catch (error) {
    return problem(
      400,
      CONDITIONAL_PROBLEMS.badPrecondition,
      'Malformed If-Match',
      (error as Error).message,
    );
  }
}

/** Runs a version-checked write under the precondition; `attempt` returns undefined when the version moved. */
async function underPrecondition<K, R>(
  store: VersionStore<K, R>,
  policy: ConditionalPolicy,
  key: K,
  headers: ConditionalHeaders,
  attempt: (version: string) => Promise<ImmediateResponse | undefined>,
): Promise<ImmediateResponse> {
  const condition = preconditionOf(headers, policy.requireIfMatch);
  if (condition !== undefined && !Array.isArray(condition) && condition !== '*') return condition;
  // Weak tags never match for a write (strong comparison, RFC 9110 §8.8.3.2).
  const strong = Array.isArray(condition)
    ? condition.filter((tag) => !tag.weak).map((tag) => tag.opaque)
    : undefined;
  if (strong !== undefined && strong.length === 1) {
    // The common case: one statement, the version checked where it is written.
    const done = await attempt(strong[0]!);
    return done ?? failed(await store.read(key));
  }
  for (let round = 0; round < policy.maxAttempts; round += 1) {
    const current = await store.read(key);
    if (current === undefined) {
      return condition === undefined
        ? problem(404, CONDITIONAL_PROBLEMS.notFound, 'Not Found', 'The resource does not exist.')
        : failed(undefined);
    }
    if (strong !== undefined && !strong.includes(current.version)) return failed(current);
    const done = await attempt(current.version);
    if (done !== undefined) return done;
    if (strong === undefined && condition === undefined) continue; // unconditional: read again and write
  }
  return failed(await store.read(key));
}

/** GET: 200 with the row and its ETag, 304 when `If-None-Match` names it, 404 when absent. */
async function readConditionally<K, R>(
  store: VersionStore<K, R>,
  key: K,
  headers: ConditionalHeaders,
): Promise<ImmediateResponse> {
  const current = await store.read(key);
  if (current === undefined)
    return problem(404, CONDITIONAL_PROBLEMS.notFound, 'Not Found', 'The resource does not exist.');
  const noneMatch = headerOf(headers['if-none-match']);
  if (noneMatch !== undefined) {
    let tags: '*' | EntityTag[];
    try {
      tags = parseEntityTags(noneMatch);
    } catch (error) {
      return problem(
        400,
        CONDITIONAL_PROBLEMS.badPrecondition,
        'Malformed If-None-Match',
        (error as Error).message,
      );
    }
    // Weak comparison for If-None-Match (RFC 9110 §13.1.2).
    if (tags === '*' || tags.some((tag) => tag.opaque === current.version)) {
      return { status: 304, headers: withEtag(current), body: '' };
    }
  }
  return json(200, current.row, withEtag(current));
}

/** POST/PUT to create: 201; with `If-None-Match: *` an existing resource is 412, without it 409. */
async function createConditionally<K, R>(
  store: VersionStore<K, R>,
  key: K,
  values: Readonly<Record<string, unknown>>,
  headers: ConditionalHeaders,
): Promise<ImmediateResponse> {
  if (!isFields(values)) return badBody();
  const noneMatch = headerOf(headers['if-none-match']);
  if (noneMatch !== undefined && noneMatch.trim() !== '*') {
    return problem(
      400,
      CONDITIONAL_PROBLEMS.badPrecondition,
      'Malformed If-None-Match',
      'create-if-absent takes If-None-Match: *',
    );
  }
  return notWritable(async () => {
    const result = await store.create(key, values);
    if (result.created) return json(201, result.current.row, withEtag(result.current));
    return noneMatch === undefined
      ? problem(
          409,
          CONDITIONAL_PROBLEMS.alreadyExists,
          'Conflict',
          'The resource already exists.',
          withEtag(result.current),
        )
      : failed(result.current);
  });
}

/** A request body that can be written: a JSON object with at least one field. */
function isFields(value: unknown): value is Readonly<Record<string, unknown>> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length > 0
  );
}

/** A field the client may not write: 400 naming it, never the database's text. */
const fieldRefused = (error: FieldNotWritableError): ImmediateResponse =>
  problem(400, CONDITIONAL_PROBLEMS.badBody, 'Bad Request', error.message);

async function notWritable(write: () => Promise<ImmediateResponse>): Promise<ImmediateResponse> {
  try {
    return await write();
  } catch (error) {
    if (error instanceof FieldNotWritableError) return fieldRefused(error);
    throw error;
  }
}

const badBody = (): ImmediateResponse =>
  problem(
    400,
    CONDITIONAL_PROBLEMS.badBody,
    'Bad Request',
    'The body must be a JSON object with the fields to write.',
  );

/**
 * Sends a response of {@link conditionalWrites} with Express or plain `node:http`.
 *
 * @example
 * ```ts
 * documents.read({ id: req.params.id }, req.headers).then((r) => sendExpress(res, r), next);
 * ```
 */
export function sendExpress(response: ServerResponse, immediate: ImmediateResponse): void {
  response.writeHead(immediate.status, immediate.headers);
  response.end(immediate.body);
}

/**
 * A response of {@link conditionalWrites} as a fetch `Response` (Hono: return it from the handler).
 *
 * @example
 * ```ts
 * app.get('/documents/:id', async (c) => toResponse(await documents.read({ id: c.req.param('id') }, { 'if-none-match': c.req.header('if-none-match') })));
 * ```
 */
export function toResponse(immediate: ImmediateResponse): Response {
  const body = immediate.status === 204 || immediate.status === 304 ? null : immediate.body;
  return new Response(typeof body === 'string' || body === null ? body : new Uint8Array(body), {
    status: immediate.status,
    headers: immediate.headers,
  });
}
