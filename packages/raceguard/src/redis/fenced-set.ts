import { InvalidArgumentError } from '../core/errors.js';
import { LockBackendError, StaleTokenError } from '../core/lock.js';
import { assertNonEmptyString } from '../core/validate.js';
import { messageOf } from '../core/errors.js';
import { LuaScript } from './script.js';
import type { RedisClientLike } from './types.js';

// KEYS[1] hash {value, fence}; ARGV[1] value, ARGV[2] token.
// Refuses any token older than the newest one the key has accepted.
const FENCED_SET = new LuaScript(`
local current = redis.call('HGET', KEYS[1], 'fence')
if current and tonumber(current) > tonumber(ARGV[2]) then
  return {0, current}
end
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'fence', ARGV[2])
return {1, ARGV[2]}`);

/**
 * Write `value` to the Redis hash at `key` only if `token` is at least the
 * newest fencing token that key has accepted, recording the token in the
 * same atomic script. A holder whose lock lapsed (paused past its lease)
 * carries an older token than the holder after it, so its late write is
 * refused with {@link StaleTokenError} instead of overwriting newer data.
 * Read the value back with `HGET key value`.
 *
 * Tokens are compared as Lua numbers: exact up to 2^53.
 *
 * @example
 * ```ts
 * await withLock(locks, 'report', async (lock) => {
 *   await fencedSet(redis, 'report:latest', render(), lock.token);
 * });
 * ```
 */
export async function fencedSet(
  client: RedisClientLike,
  key: string,
  value: string,
  token: bigint,
): Promise<void> {
  assertNonEmptyString('key', key);
  if (typeof value !== 'string') throw new InvalidArgumentError('value', 'a string', value);
  if (typeof token !== 'bigint' || token < 0n)
    throw new InvalidArgumentError('token', 'a non-negative bigint', token);
  let result: [number, string];
  try {
    result = (await FENCED_SET.run(client, [key], [value, token.toString()])) as [number, string];
  } catch (error) {
    throw new LockBackendError(`Redis failed a fenced write: ${messageOf(error)}`, error);
  }
  if (result[0] !== 1)
    throw new StaleTokenError(`Redis key ${JSON.stringify(key)}`, token, BigInt(result[1]));
}
