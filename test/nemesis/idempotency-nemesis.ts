/**
 * The idempotency layer's adversary: from one seed, workers send requests
 * over a small key space through a Redis store whose connections stall at
 * random (the server paused, the client's connection silenced) under the
 * client timeouts the docs recommend, with leases short enough that some
 * stalls outlast them. Checked afterwards: at most one execution per key
 * was reported a success to its caller (a stall past the lease may run a
 * copy, documented, but the first request is then told an error:
 * `IdempotencyClaimLostError`, or a store error when its completion could
 * not be written), and every answer for a key is one of its executions'
 * results.
 */
import { Redis } from 'ioredis';
import { IdempotencyClaimLostError } from '../../packages/raceguard/src/idempotency/errors.js';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import { openTestRedis } from '../helpers/redis.js';
import { silenceableProxy } from '../helpers/silent-proxy.js';

export interface IdempotencyNemesisResult {
  readonly seed: number;
  readonly requests: number;
  readonly executions: number;
  readonly stalls: number;
  readonly violations: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function idempotencyNemesis(
  seed: number,
  durationMs: number,
): Promise<IdempotencyNemesisResult> {
  const random = createRandom(seed);
  const redis = await openTestRedis();
  const proxy = await silenceableProxy(redis.server.port);
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    maxRetriesPerRequest: 1,
    commandTimeout: 300,
  });
  client.on('error', () => undefined);
  const store = new RedisIdempotencyStore({ client, prefix: `${redis.prefix}idem:` });
  const executions = new Map<string, string[]>();
  const answers = new Map<string, string[]>();
  const claimLost = new Map<string, number>();
  /** Executions whose own request was answered with their result. */
  const succeeded = new Map<string, Set<string>>();
  let requests = 0;
  let stalls = 0;
  const end = performance.now() + durationMs;
  const pid = redis.server.process.pid as number;
  const faults = [
    { begin: () => process.kill(pid, 'SIGSTOP'), end: () => process.kill(pid, 'SIGCONT') },
    { begin: () => proxy.silence(), end: () => proxy.resume() },
  ];

  const worker = async (id: number): Promise<void> => {
    const r = createRandom(seed * 131 + id);
    /** Results of executions this worker's own requests ran. */
    const mine = new Set<string>();
    while (performance.now() < end) {
      const key = `k${r.int(30)}`;
      requests++;
      try {
        const { value } = await idempotent(
          store,
          {
            scope: 'nemesis',
            key,
            payload: { key },
            leaseMs: 600,
            callTimeoutMs: 200,
            concurrent: 'wait',
            waitMs: 2000,
          },
          async () => {
            const result = `${key}@${id}:${performance.now().toFixed(3)}`;
            executions.set(key, [...(executions.get(key) ?? []), result]);
            mine.add(result);
            await sleep(r.int(150));
            return result;
          },
        );
        answers.set(key, [...(answers.get(key) ?? []), value]);
        if (mine.has(value)) succeeded.set(key, (succeeded.get(key) ?? new Set()).add(value));
      } catch (error) {
        if (error instanceof IdempotencyClaimLostError) {
          claimLost.set(key, (claimLost.get(key) ?? 0) + 1);
        }
        // Store failures, in-flight timeouts: the client is told; nothing to check.
      }
      await sleep(r.int(30));
    }
  };
  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(100 + random.int(600));
      if (performance.now() >= end) break;
      const fault = faults[random.int(faults.length)] as (typeof faults)[number];
      fault.begin();
      stalls++;
      await sleep(50 + random.int(1100));
      fault.end();
    }
  };
  try {
    await Promise.all([nemesis(), ...Array.from({ length: 8 }, (_, i) => worker(i))]);
  } finally {
    process.kill(pid, 'SIGCONT');
    proxy.resume();
    client.disconnect();
    proxy.close();
    await redis.close();
  }
  const violations: string[] = [];
  for (const [key, ok] of succeeded) {
    if (ok.size > 1) {
      violations.push(
        `${key}: ${ok.size} executions were each reported a success (${(executions.get(key) ?? []).length} ran, ${claimLost.get(key) ?? 0} claim(s) reported lost)`,
      );
    }
  }
  for (const [key, got] of answers) {
    const ran = new Set(executions.get(key) ?? []);
    for (const value of got) {
      if (!ran.has(value))
        violations.push(`${key}: answered ${value}, which no execution returned`);
    }
  }
  const total = [...executions.values()].reduce((n, ran) => n + ran.length, 0);
  return { seed, requests, executions: total, stalls, violations };
}
