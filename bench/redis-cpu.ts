/** Shared by the benchmarks: the CPU time a Redis server has used. */
import type { Redis } from 'ioredis';

/** CPU time the Redis server behind `client` has used so far (all its threads), in µs. */
export async function redisCpuUs(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  const seconds = (name: string): number =>
    Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6;
}
