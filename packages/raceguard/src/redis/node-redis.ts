/**
 * node-redis support: adapters that give a node-redis (`redis`,
 * `@redis/client` v4+) client the shape raceguard's Redis modules call
 * (ioredis-style `evalsha`/`eval`, and a `message` event for pub/sub).
 * Typed structurally: raceguard never imports node-redis.
 */
import { EventEmitter } from 'node:events';
import { InvalidArgumentError } from '../core/errors.js';
import type { RedisClientLike, RedisSubscriberLike } from './types.js';

/** The slice of a node-redis client the adapter calls. */
export interface NodeRedisClientLike {
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** The slice of a node-redis subscriber connection (`client.duplicate()`, connected) the adapter calls. */
export interface NodeRedisSubscriberLike {
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  /** node-redis's connection events (`end`, `reconnecting`, `ready`), forwarded as `close` and `ready`. */
  on?(event: string, listener: () => void): unknown;
}

function split(
  numKeys: number,
  args: readonly (string | number)[],
): { keys: string[]; arguments: string[] } {
  const strings = args.map(String);
  return { keys: strings.slice(0, numKeys), arguments: strings.slice(numKeys) };
}

/**
 * Wrap a connected node-redis client for `RedisLock`, `Redlock`,
 * `fencedSet` and `RedisIdempotencyStore`.
 *
 * @example
 * ```ts
 * import { createClient } from 'redis';
 * const client = await createClient({ url }).connect();
 * const subscriber = await client.duplicate().connect();
 * const locks = new RedisLock({ client: fromNodeRedis(client), subscriber: subscriberFromNodeRedis(subscriber) });
 * ```
 */
export function fromNodeRedis(client: NodeRedisClientLike): RedisClientLike {
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof client.evalSha !== 'function' ||
    typeof client.eval !== 'function'
  ) {
    throw new InvalidArgumentError(
      'client',
      'a node-redis client (createClient().connect())',
      client,
    );
  }
  return {
    evalsha: (sha, numKeys, ...args) => client.evalSha(sha, split(numKeys, args)),
    eval: (script, numKeys, ...args) => client.eval(script, split(numKeys, args)),
  };
}

/**
 * Wrap a connected node-redis subscriber connection for `RedisLock`'s
 * release notifications.
 *
 * @example
 * ```ts
 * const subscriber = await client.duplicate().connect();
 * new RedisLock({ client: fromNodeRedis(client), subscriber: subscriberFromNodeRedis(subscriber) });
 * ```
 */
export function subscriberFromNodeRedis(subscriber: NodeRedisSubscriberLike): RedisSubscriberLike {
  if (
    typeof subscriber !== 'object' ||
    subscriber === null ||
    typeof subscriber.subscribe !== 'function' ||
    typeof subscriber.unsubscribe !== 'function'
  ) {
    throw new InvalidArgumentError(
      'subscriber',
      'a connected node-redis client in subscriber mode',
      subscriber,
    );
  }
  const events = new EventEmitter();
  const listener = (message: string, channel: string): void => {
    events.emit('message', channel, message);
  };
  if (typeof subscriber.on === 'function') {
    subscriber.on('end', () => events.emit('close'));
    subscriber.on('reconnecting', () => events.emit('close'));
    subscriber.on('ready', () => events.emit('ready'));
  }
  return {
    subscribe: (channel) => subscriber.subscribe(channel, listener),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
    on: (event: string, handler: (...args: string[]) => void) => events.on(event, handler),
  };
}
