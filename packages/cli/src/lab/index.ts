/**
 * `raceguard/lab`: the race lab as a library: its server, its runner, and
 * its scenarios as `raceguard run` scenario definitions.
 *
 * @packageDocumentation
 */
export { labScenarios, type LabScenariosOptions } from './as-scenarios.js';
export { createLabServer, type LabServer, type LabServerOptions } from './server.js';
export {
  runLab,
  type LabOptions,
  type LabProgress,
  type LabReport,
  type LabResult,
  type LabStart,
} from './run-lab.js';
export { STRATEGIES, LOCK_STRATEGIES, ALL_STRATEGIES, type Strategy } from './scenario.js';
export { SCENARIOS, MESSAGE_SCENARIOS } from './scenarios/index.js';
export type {
  MessageScenario,
  MessageTrial,
  MessageTrialContext,
  LabBroker,
} from './message-scenario.js';
export { serveLab, type ServeLabOptions, type ServedLab } from './serve-lab.js';
