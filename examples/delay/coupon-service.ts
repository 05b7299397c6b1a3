/**
 * A coupon service with a race whose window is tiny: between the check and
 * the write of a redemption there is only an `await` that returns at once. `delayPoint` marks
 * the window so `raceguard run --delay after-check=30` can widen it.
 *
 *   RACEGUARD_DELAYS=on npx tsx examples/delay/coupon-service.ts
 *   npx raceguard run examples/delay/coupon.scenario.json --delay after-check=30
 */
import Fastify from 'fastify';
import { delayPoint } from 'raceguard/delay';
import { fastifyDelays } from 'raceguard/http/fastify';

/** An audit trail whose writes are buffered in memory: fast today, but an `await` all the same. */
class AuditTrail {
  readonly entries: string[] = [];
  async record(entry: string): Promise<void> {
    this.entries.push(entry);
    return Promise.resolve();
  }
}

/** Starts the service on a free loopback port. */
export async function startCouponService(
  port = 0,
): Promise<{ url: string; close(): Promise<void> }> {
  const redemptions = new Map<string, number>();
  const audit = new AuditTrail();
  const app = Fastify();
  await app.register(fastifyDelays()); // honours x-raceguard-delay only in test mode
  app.post<{ Params: { code: string } }>('/coupons/:code/redeem', async (request, reply) => {
    const used = redemptions.get(request.params.code) ?? 0;
    if (used >= 1) return reply.code(409).send({ error: 'already redeemed' });
    // The race window: checked, not yet written. Today the await returns within the same turn,
    // so no other request can get in; the day the audit trail writes to a server, one will.
    await audit.record(`redeem ${request.params.code}`);
    await delayPoint('after-check');
    redemptions.set(request.params.code, used + 1);
    return reply.code(201).send({ redeemed: request.params.code });
  });
  app.delete('/coupons', async (_request, reply) => {
    redemptions.clear();
    return reply.code(204).send();
  });
  const url = await app.listen({ host: '127.0.0.1', port });
  return { url, close: () => app.close() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { url } = await startCouponService(Number(process.env.PORT ?? 3100));
  process.stdout.write(`coupon service at ${url}\n`);
}
