/**
 * Idempotency keys: validation, and parsing of the `Idempotency-Key` header
 * as a Structured Field string (RFC 8941 §3.3.3), bare tokens accepted.
 */
import { InvalidIdempotencyKeyError } from './errors.js';

/** Limits applied to a key. */
export interface KeyRules {
  /** Longest key accepted, in characters. @default 255 */
  readonly maxLength?: number;
}

export const DEFAULT_MAX_KEY_LENGTH = 255;

// Printable ASCII, space included: what an sf-string may hold.
const PRINTABLE = /^[\x20-\x7e]*$/;
// A bare (unquoted) key: visible ASCII without the characters that delimit structured fields.
const BARE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/;

/**
 * Check a key that is already unquoted. Throws
 * {@link InvalidIdempotencyKeyError} for an empty, over-long or non-ASCII key.
 *
 * @example
 * ```ts
 * validateIdempotencyKey(crypto.randomUUID());
 * ```
 */
export function validateIdempotencyKey(key: unknown, rules: KeyRules = {}): string {
  const maxLength = rules.maxLength ?? DEFAULT_MAX_KEY_LENGTH;
  if (key === undefined || key === null) {
    throw new InvalidIdempotencyKeyError('missing', 'is required', key);
  }
  if (typeof key !== 'string') {
    throw new InvalidIdempotencyKeyError('syntax', 'must be a string', key);
  }
  if (key.length === 0) throw new InvalidIdempotencyKeyError('empty', 'must not be empty', key);
  if (key.length > maxLength) {
    throw new InvalidIdempotencyKeyError(
      'too-long',
      `must be at most ${maxLength} characters (got ${key.length})`,
      key,
    );
  }
  if (!PRINTABLE.test(key)) {
    throw new InvalidIdempotencyKeyError(
      'characters',
      'must contain printable ASCII characters only',
      key,
    );
  }
  return key;
}

/**
 * Parse an `Idempotency-Key` header value. Accepts the Structured Field
 * string form the IETF draft specifies (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`,
 * with `\"` and `\\` escapes) and, leniently, a bare value without quotes
 * (`8e03978e-...`). Returns `undefined` when the header is absent.
 *
 * @example
 * ```ts
 * const key = parseIdempotencyKeyHeader(request.headers['idempotency-key']);
 * ```
 */
export function parseIdempotencyKeyHeader(
  value: string | readonly string[] | undefined,
  rules: KeyRules = {},
): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    if (value.length === 1) return parseIdempotencyKeyHeader(value[0], rules);
    throw new InvalidIdempotencyKeyError('multiple', 'must be sent once', value);
  }
  const text = value.trim();
  if (text.length === 0) throw new InvalidIdempotencyKeyError('empty', 'must not be empty', value);
  if (!text.startsWith('"')) {
    if (!BARE.test(text)) {
      throw new InvalidIdempotencyKeyError(
        PRINTABLE.test(text) ? 'syntax' : 'characters',
        'must be a quoted string or a bare token of visible ASCII characters',
        value,
      );
    }
    return validateIdempotencyKey(text, rules);
  }
  let key = '';
  for (let i = 1; i < text.length; i += 1) {
    const char = text[i] as string;
    if (char === '\\') {
      const next = text[i + 1];
      if (next !== '"' && next !== '\\') {
        throw new InvalidIdempotencyKeyError('syntax', 'has an invalid escape', value);
      }
      key += next;
      i += 1;
    } else if (char === '"') {
      if (i !== text.length - 1) {
        throw new InvalidIdempotencyKeyError('syntax', 'has text after its closing quote', value);
      }
      return validateIdempotencyKey(key, rules);
    } else {
      key += char;
    }
  }
  throw new InvalidIdempotencyKeyError('syntax', 'has no closing quote', value);
}
