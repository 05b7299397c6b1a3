/**
 * `raceguard/explore`: controlled interleavings for unit tests. A scheduler
 * owns the order in which tasks resume at explicit points, at intercepted
 * pg / ioredis / fetch calls and at virtual timers; strategies (random, PCT,
 * partial-order sampling, preemption-bounded systematic search, and a
 * measured portfolio) pick schedules; a failure comes shrunk to its fewest
 * preemptions, with a replay string and a readable trace.
 *
 * @packageDocumentation
 */
export {
  explore,
  DEFAULT_PORTFOLIO,
  type PortfolioMember,
  type ExploreOptions,
  type ExploreReport,
  type ExploreProgram,
} from './explore.js';
export { exploreTest, type ExploreTestOptions } from './node-test.js';
export type { ExploreContext, ExploreTimer } from './context.js';
export type { WrapOptions } from './intercept.js';
export type { StrategyName } from './strategies.js';
export { encodeSchedule, decodeSchedule, formatTrace } from './schedule.js';
export {
  ExploreFailure,
  DeadlockError,
  StepTimeoutError,
  ReplayDivergedError,
  type TraceStep,
} from './errors.js';
