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
  return plainCanonicalJson(value) ?? JSON.stringify(value, sortedMembers) ?? 'undefined';
}

/** The replacer of {@link canonicalJson}: each object's members in sorted order. */
function sortedMembers(_key: string, member: unknown): unknown {
  if (member === null || typeof member !== 'object' || Array.isArray(member)) return member;
  if (Buffer.isBuffer(member) || ArrayBuffer.isView(member)) return member;
  const sorted: Record<string, unknown> = {};
  for (const name of Object.keys(member).sort()) {
    sorted[name] = (member as Record<string, unknown>)[name];
  }
  return sorted;
}

/** Nesting beyond which {@link plainCanonicalJson} leaves a value to the replacer. */
const MAX_PLAIN_DEPTH = 64;

/**
 * The text {@link canonicalJson} gives, written directly for what a parsed
 * JSON body holds (plain objects, plain arrays, strings, numbers, booleans,
 * null), without the replacer's copy of every object; `undefined` for
 * anything else, which then takes the replacer's path. Objects whose
 * member names would not come out of that copy in sorted order (names that
 * start with a digit, which JavaScript orders as array indices, and
 * `__proto__`, which the copy drops) take that path too, so both give the
 * same text for every input.
 */
function plainCanonicalJson(value: unknown, depth = 0): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null) return 'null';
  // Deeper than any request body: possibly a cycle, which JSON.stringify reports.
  if (depth > MAX_PLAIN_DEPTH) return undefined;
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype || 'toJSON' in value) return undefined;
    let text = '[';
    for (let i = 0; i < value.length; i += 1) {
      const item: unknown = value[i];
      const part = item === undefined ? 'null' : plainCanonicalJson(item, depth + 1);
      if (part === undefined) return undefined;
      text += i === 0 ? part : `,${part}`;
    }
    return `${text}]`;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return undefined;
  const record = value as Record<string, unknown>;
  if ('toJSON' in record) return undefined;
  const names = Object.keys(record).sort();
  let text = '{';
  let first = true;
  for (const name of names) {
    const code = name.charCodeAt(0);
    if ((code >= 48 && code <= 57) || name === '__proto__') return undefined;
    const member = record[name];
    if (member === undefined) continue;
    const part = plainCanonicalJson(member, depth + 1);
    if (part === undefined) return undefined;
    text += `${first ? '' : ','}${JSON.stringify(name)}:${part}`;
    first = false;
  }
  return `${text}}`;
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
