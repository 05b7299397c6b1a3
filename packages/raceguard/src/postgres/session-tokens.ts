/**
 * Session tokens of `ReplicaRouter` kept in this process, by user (or any
 * session key), for services that hold their sessions server-side: the
 * user's next request finds the token of their last write without a cookie.
 * Bounded: at most `maxEntries` users (least recently written first out),
 * each token for `maxAgeMs`. Across instances, carry the token in a cookie
 * or header instead (`raceguard/http`), or keep it in the shared session
 * store.
 */
import {
  assertKnownOptions,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';

const OPTIONS = new Set(['maxEntries', 'maxAgeMs', 'now']);

/**
 * Tokens by session key.
 *
 * @example
 * ```ts
 * const tokens = new SessionTokens();
 * const { token } = await router.write(work, { token: tokens.get(userId) });
 * tokens.set(userId, token);
 * const { result } = await router.read(query, { token: tokens.get(userId) });
 * ```
 */
export class SessionTokens {
  readonly #entries = new Map<string, { readonly token: string; readonly at: number }>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(
    options: {
      readonly maxEntries?: number;
      readonly maxAgeMs?: number;
      readonly now?: () => number;
    } = {},
  ) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS);
    this.#maxEntries = options.maxEntries ?? 100_000;
    assertPositiveInteger('options.maxEntries', this.#maxEntries);
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    assertPositiveInteger('options.maxAgeMs', this.#maxAgeMs);
    this.#now = options.now ?? (() => performance.now());
  }

  /** The token of `key`'s last write, if recent enough. */
  get(key: string): string | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#now() - entry.at > this.#maxAgeMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /** Remember `token` as `key`'s latest. */
  set(key: string, token: string): void {
    assertNonEmptyString('key', key);
    assertNonEmptyString('token', token);
    this.#entries.delete(key);
    this.#entries.set(key, { token, at: this.#now() });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}
