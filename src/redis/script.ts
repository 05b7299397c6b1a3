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

  async run(
    client: RedisClientLike,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!messageOf(error).includes('NOSCRIPT')) throw error;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
