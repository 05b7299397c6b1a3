/**
 * The slice of a Redis client raceguard calls. ioredis's `Redis` satisfies it
 * structurally; raceguard never imports the driver.
 */
export interface RedisClientLike {
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/**
 * A connection in subscriber mode, used to wake waiters when a lock is
 * released (ioredis: `redis.duplicate()`).
 */
export interface RedisSubscriberLike {
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  on(event: 'message', listener: (channel: string, message: string) => void): unknown;
  /**
   * The connection was lost (`close`) or is usable again (`ready`), as ioredis
   * emits them. The cache's in-process tier forgets everything while its bus
   * is down; a connection that never emits them is taken to stay up.
   */
  on(event: 'close' | 'ready', listener: () => void): unknown;
  /** Remove a listener (ioredis, as an EventEmitter): lets a closed cache leave the connection as it found it. */
  off?(event: 'message' | 'close', listener: (...args: string[]) => void): unknown;
}
