/**
 * The README's scenario, runnable against the race lab: the last units of a
 * product bought by 50 buyers at once, on the lab's unsafe inventory
 * endpoint (a race) and on its atomic fix (clean).
 *
 *   npx raceguard lab --serve          # prints the lab's URL and its database URL
 *   DATABASE_URL='<the database URL it printed>' \
 *     npx raceguard run examples/race/last-unit.scenario.ts
 *
 * Expect exit 1: "RACE last unit (unsafe): at-most-1-winners violated ...",
 * and no violation for the atomic variant.
 */
import {
  atMostWinners,
  defineScenario,
  matchesSuccesses,
  neverNegative,
  winnersMatch,
} from 'raceguard/run';

const target = process.env.LAB_URL ?? 'http://127.0.0.1:4100';

const lastUnit = (strategy: 'unsafe' | 'atomic') =>
  defineScenario({
    name: `last unit (${strategy})`,
    target,
    trials: 5,
    // databaseUrl defaults to $DATABASE_URL: the lab's, whose search path is the lab's schema.
    setup: async ({ http, sql }) => {
      // Creates the tables for this strategy (the first time) and seeds them.
      const reset = await http({
        method: 'POST',
        path: `/lab/inventory/${strategy}/reset`,
        json: { concurrency: 10 },
      });
      if (reset.status !== 200) throw new Error(`reset answered ${reset.status}`);
      await sql('UPDATE inventory_products SET stock = 1 WHERE id = 1');
    },
    burst: {
      count: 50,
      request: (i) => ({
        method: 'POST',
        path: `/scenarios/inventory/${strategy}`,
        json: { productId: 1, buyer: `buyer-${i}` },
      }),
    },
    check: async ({ responses, sql }) => {
      const [product] = await sql('SELECT stock FROM inventory_products WHERE id = 1');
      const orders = await sql('SELECT buyer FROM inventory_orders ORDER BY id');
      const bought = (r: { status: number }) => r.status === 200;
      return [
        atMostWinners(responses, 1, bought),
        neverNegative(Number(product?.stock), 'stock'),
        matchesSuccesses(responses, {
          actual: orders.length,
          expected: (wins) => wins,
          what: 'orders',
          isSuccess: bought,
        }),
        // Every order belongs to a buyer who was told "purchased", and the other way round.
        winnersMatch(
          responses,
          orders.map((o) => o.buyer),
          {
            identify: (r) => (r.request.json as { buyer: string }).buyer,
            isWinner: bought,
            what: 'orders',
          },
        ),
      ];
    },
  });

export default [lastUnit('unsafe'), lastUnit('atomic')];
