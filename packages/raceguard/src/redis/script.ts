import { createHash } from 'node:crypto';
import { messageOf } from '../core/errors.js';
import type { RedisClientLike } from './types.js';

/**
 * A Lua script run atomically on the server by its SHA1 (`EVALSHA`), sent
 * in full (`EVAL`) only when the server does not have it cached yet
 * (`NOSCRIPT`, e.g. after a restart or `SCRIPT FLUSH`).
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Run the script: `EVALSHA`, then `EVAL` if the server answers `NOSCRIPT`. */
  async run(
    client: RedisClientLike,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    try {
      return await this.send(client, keys, args);
    } catch (error) {
      return this.recover(client, keys, args, error);
    }
  }

  /**
   * `EVALSHA` alone: the driver's own reply promise, which a hot path (lock
   * grant and release) awaits directly, since every promise layer costs
   * there. Pass a failure to {@link recover}. May throw synchronously.
   *
   * @example
   * ```ts
   * let reply: unknown;
   * try {
   *   reply = await script.send(redis, ['k'], ['v']);
   * } catch (error) {
   *   reply = await script.recover(redis, ['k'], ['v'], error);
   * }
   * ```
   */
  send(
    client: RedisClientLike,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return client.evalsha(this.sha, keys.length, ...keys, ...args);
  }

  /**
   * After {@link send} failed with `error`: `EVAL` the source if the server
   * lacked the script (`NOSCRIPT`), else rethrow `error`.
   *
   * @example
   * ```ts
   * const reply = await script.send(redis, keys, args).catch((error: unknown) => script.recover(redis, keys, args, error));
   * ```
   */
  async recover(
    client: RedisClientLike,
    keys: readonly string[],
    args: readonly (string | number)[],
    error: unknown,
  ): Promise<unknown> {
    if (!messageOf(error).includes('NOSCRIPT')) throw error;
    return client.eval(this.source, keys.length, ...keys, ...args);
  }
}
