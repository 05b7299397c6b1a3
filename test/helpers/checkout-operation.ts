/** The checkout of the crash tests as atomic phases, shared by the server process and the completer. */
import type { PhasedOperation } from '../../packages/raceguard/src/postgres/atomic-phases.js';
import type { Transaction } from '../../packages/raceguard/src/postgres/transaction.js';
import type { Queryable } from '../../packages/raceguard/src/postgres/types.js';

interface Order {
  item: string;
}
interface CheckoutState {
  orderId?: number;
  chargeId?: number;
}

/** The "payment provider": deduplicates on the downstream key, counts every call. */
async function providerCharge(pool: Queryable, downstreamKey: string): Promise<number> {
  await pool.query('INSERT INTO provider_calls (downstream_key) VALUES ($1)', [downstreamKey]);
  const { rows } = await pool.query(
    `INSERT INTO provider_charges (downstream_key) VALUES ($1)
     ON CONFLICT (downstream_key) DO UPDATE SET downstream_key = EXCLUDED.downstream_key RETURNING id`,
    [downstreamKey],
  );
  return Number(rows[0]?.id);
}

/** The three-phase checkout; `maybeStall` lets the server hang at a named point. */
export const checkoutOperation = (
  pool: Queryable,
  key: string,
  maybeStall: (key: string, point: string) => Promise<void> = () => Promise.resolve(),
): PhasedOperation<Order, CheckoutState, unknown> => ({
  name: 'checkout',
  initialState: {},
  phases: [
    {
      name: 'order-created',
      commit: async (tx: Transaction, { input }) => {
        const { rows } = await tx.query(
          'INSERT INTO orders (idem_key, item) VALUES ($1, $2) RETURNING id',
          [key, input.item],
        );
        return { orderId: Number(rows[0]?.id) };
      },
    },
    {
      name: 'charged',
      call: async ({ downstreamKey }) => {
        await maybeStall(key, 'before-charge');
        return providerCharge(pool, downstreamKey);
      },
      commit: async (tx, { state, called }) => {
        await maybeStall(key, 'in-charge-commit');
        await tx.query('UPDATE orders SET charge_id = $1 WHERE id = $2', [called, state.orderId]);
        return { ...state, chargeId: called as number };
      },
    },
    {
      name: 'emailed',
      call: () => maybeStall(key, 'before-email'),
      commit: async (tx, { state }) => {
        await tx.query('INSERT INTO outbox (order_id) VALUES ($1)', [state.orderId]);
        return state;
      },
    },
  ],
  respond: (state) => ({ orderId: state.orderId, chargeId: state.chargeId }),
});
