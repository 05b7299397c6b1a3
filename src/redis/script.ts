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

  /**
   * Run the script. `wrapError`, when given, turns any failure (a rejected
   * reply, or a driver that throws at once) into the error the caller
   * reports. Written with one `then` rather than `async` layers: lock grants
   * and releases run through here, and every layer costs on that hot path.
   */
  run(
    client: RedisClientLike,
    keys: readonly string[],
    args: readonly (string | number)[],
    wrapError?: (error: unknown) => Error,
  ): Promise<unknown> {
    let reply: Promise<unknown>;
    try {
      reply = client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      reply = Promise.reject(error instanceof Error ? error : new Error(messageOf(error)));
    }
    return reply.then(undefined, (error: unknown) => {
      if (!messageOf(error).includes('NOSCRIPT')) throw wrapError ? wrapError(error) : error;
      const sent = (async () => client.eval(this.source, keys.length, ...keys, ...args))();
      return wrapError ? sent.catch((cause: unknown) => Promise.reject(wrapError(cause))) : sent;
    });
  }
}
