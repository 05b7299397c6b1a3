/**
 * `@raceguard/cli/lab`: the race lab as a library: its server, its runner, and
 * its scenarios as `raceguard run` scenario definitions.
 *
 * @packageDocumentation
 */
export { labScenarios, type LabScenariosOptions } from './as-scenarios.js';
export { createLabServer, type LabServer, type LabServerOptions } from './server.js';
export {
  postgresDb,
  mysqlDb,
  type LabDb,
  type LabPool,
  type LabDialect,
  type LabStatementResult,
} from './sql.js';
export {
  runLab,
  type LabOptions,
  type LabProgress,
  type LabReport,
  type LabResult,
  type LabStart,
} from './run-lab.js';
export {
  STRATEGIES,
  LOCK_STRATEGIES,
  CACHE_STRATEGIES,
  REPLICA_STRATEGIES,
  ALL_STRATEGIES,
  KNOWN_UNSAFE,
  type Strategy,
  type CacheStrategy,
  type ReplicaStrategy,
} from './scenario.js';
export {
  SCENARIOS,
  MESSAGE_SCENARIOS,
  CACHE_SCENARIOS,
  REPLICA_SCENARIOS,
  CLOCK_SCENARIOS,
  ALL_SCENARIO_NAMES,
} from './scenarios/index.js';
export type { ClockScenario, ClockTrial, ClockTrialContext } from './clock-scenario.js';
export type {
  ReplicaScenario,
  ReplicaTrial,
  ReplicaTrialContext,
  LabReplicas,
} from './replica-scenario.js';
export type { CacheScenario, CacheTrial, CacheTrialContext, LabRedis } from './cache-scenario.js';
export type {
  MessageScenario,
  MessageTrial,
  MessageTrialContext,
  LabBroker,
} from './message-scenario.js';
export { serveLab, type ServeLabOptions, type ServedLab } from './serve-lab.js';
export { advise, type AdviseOptions, type AdviceReport, type AdviceResult } from './advise.js';
export {
  driveRow,
  rowOperations,
  ROW_STRATEGIES,
  type RowStrategy,
  type RowTarget,
  type RowOperations,
  type DriveOptions,
  type DriveResult,
} from './row-workload.js';
