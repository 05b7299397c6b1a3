/**
 * A process that takes a fill lease and dies holding it: it tells the parent
 * once its loader runs, then hangs until SIGKILLed. argv: redis url, prefix, key.
 */
import { Redis } from 'ioredis';
import { LeaseCache } from '../../packages/raceguard/src/cache/lease-cache.js';

const [url, prefix, key] = process.argv.slice(2);
const client = new Redis(url ?? '');
const cache = new LeaseCache({ client, prefix: prefix ?? '', leaseMs: 500 });
void cache.get(key ?? 'k', async () => {
  process.send?.('loading');
  await new Promise(() => undefined);
  return 'never';
});
