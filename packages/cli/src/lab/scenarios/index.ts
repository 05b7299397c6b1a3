import type { CacheScenario } from '../cache-scenario.js';
import type { MessageScenario } from '../message-scenario.js';
import type { ReplicaScenario } from '../replica-scenario.js';
import type { ClockScenario } from '../clock-scenario.js';
import { addressRegister } from './address-register.js';
import type { Scenario } from '../scenario.js';
import { bank } from './bank.js';
import { counter } from './counter.js';
import { coupon } from './coupon.js';
import { inventory } from './inventory.js';
import { like } from './like.js';
import { loan } from './loan.js';
import { orderEvents } from './order-events.js';
import { payment } from './payment.js';
import { productPrice } from './product-price.js';
import { profileRead } from './profile-read.js';
import { seat } from './seat.js';
import { twoEditors } from './two-editors.js';

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
  twoEditors,
];

/** The lab's message scenarios (they run on NATS JetStream). */
export const MESSAGE_SCENARIOS: readonly MessageScenario[] = [orderEvents];

/** The lab's cache scenarios (they run on Redis). */
export const CACHE_SCENARIOS: readonly CacheScenario[] = [productPrice];

/** The lab's replica scenarios (a primary and a lagging hot standby started for the run). */
export const REPLICA_SCENARIOS: readonly ReplicaScenario[] = [profileRead];

/** The lab's clock scenarios (two nodes with skewed clocks, on the lab's PostgreSQL). */
export const CLOCK_SCENARIOS: readonly ClockScenario[] = [addressRegister];

/** Every lab scenario's name, across the shapes, in report order. */
export const ALL_SCENARIO_NAMES: readonly string[] = [
  ...SCENARIOS,
  ...MESSAGE_SCENARIOS,
  ...CACHE_SCENARIOS,
  ...CLOCK_SCENARIOS,
  ...REPLICA_SCENARIOS,
].map((s) => s.name);
