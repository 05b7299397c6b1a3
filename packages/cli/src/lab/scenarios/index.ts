import type { Scenario } from '../scenario.js';
import { bank } from './bank.js';
import { counter } from './counter.js';
import { coupon } from './coupon.js';
import { inventory } from './inventory.js';
import { like } from './like.js';
import { loan } from './loan.js';
import { payment } from './payment.js';
import { seat } from './seat.js';

/** Every lab scenario, in report order. */
export const SCENARIOS: readonly Scenario[] = [
  inventory,
  bank,
  seat,
  coupon,
  counter,
  like,
  loan,
  payment,
];
