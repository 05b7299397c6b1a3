/** Request fingerprints: what makes two requests with one key "the same". */
import crypto, { createHash } from 'node:crypto';

/**
 * JSON text of `value` with object keys sorted at every depth, so
 * `{"a":1,"b":2}` and `{"b":2,"a":1}` are equal. Follows `JSON.stringify`
 * otherwise (`toJSON` honoured, `undefined` members dropped).
 *
 * @example
 * ```ts
 * canonicalJson({ b: 2, a: [1, { d: 4, c: 3 }] }); // '{"a":[1,{"c":3,"d":4}],"b":2}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  return (
    JSON.stringify(value, (_key, member: unknown) => {
      if (member === null || typeof member !== 'object' || Array.isArray(member)) return member;
      if (Buffer.isBuffer(member) || ArrayBuffer.isView(member)) return member;
      const sorted: Record<string, unknown> = {};
      for (const name of Object.keys(member).sort()) {
        sorted[name] = (member as Record<string, unknown>)[name];
      }
      return sorted;
    }) ?? 'undefined'
  );
}

/** What the default HTTP fingerprint covers. */
export interface RequestShape {
  /** HTTP method, e.g. `POST`. */
  readonly method: string;
  /** Path and query, e.g. `/orders?draft=1`. */
  readonly url: string;
  /** Parsed JSON body, raw text, bytes, or `undefined`. */
  readonly body?: unknown;
}

/**
 * SHA-256 of the request's method, URL and body. A parsed JSON body is
 * canonicalised first, so member order does not matter; raw bodies are
 * hashed byte for byte.
 *
 * @example
 * ```ts
 * fingerprintRequest({ method: 'POST', url: '/payments', body: { amount: 100 } });
 * ```
 */
export function fingerprintRequest(request: RequestShape): string {
  const head = `${request.method.toUpperCase()}\0${request.url}\0`;
  const { body } = request;
  if (body instanceof Uint8Array) {
    return createHash('sha256').update(head).update('b').update(body).digest('hex');
  }
  const tail =
    body === undefined || body === null
      ? '-'
      : typeof body === 'string'
        ? `s${body}`
        : `j${canonicalJson(body)}`;
  // One-shot hashing of one string: a fraction of the cost of a Hash object per request.
  return sha256(head + tail);
}

/**
 * SHA-256 of the canonical JSON of any payload: the fingerprint
 * {@link idempotent} uses for its `payload` option.
 */
export function fingerprintPayload(payload: unknown): string {
  return sha256(canonicalJson(payload));
}

// crypto.hash (Node 20.12+) hashes in one call; older Node 20 falls back to a Hash object.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string })
  .hash;
/** Hex SHA-256 of a string, in one call where Node has `crypto.hash`. Internal. */
export function sha256(text: string): string {
  return oneShot !== undefined
    ? oneShot('sha256', text, 'hex')
    : createHash('sha256').update(text).digest('hex');
}
