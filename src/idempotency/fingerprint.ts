/** Request fingerprints: what makes two requests with one key "the same". */
import { createHash } from 'node:crypto';

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
  const hash = createHash('sha256');
  hash.update(request.method.toUpperCase()).update('\0').update(request.url).update('\0');
  const { body } = request;
  if (body === undefined || body === null) hash.update('-');
  else if (typeof body === 'string') hash.update('s').update(body);
  else if (body instanceof Uint8Array) hash.update('b').update(body);
  else hash.update('j').update(canonicalJson(body));
  return hash.digest('hex');
}

/**
 * SHA-256 of the canonical JSON of any payload: the fingerprint
 * {@link idempotent} uses for its `payload` option.
 */
export function fingerprintPayload(payload: unknown): string {
  return createHash('sha256').update(canonicalJson(payload)).digest('hex');
}
