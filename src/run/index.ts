/**
 * `raceguard/run`: find race conditions in any HTTP API with synchronised
 * bursts and invariant checks, from the CLI (`raceguard run`) or from tests.
 *
 * @packageDocumentation
 */
export {
  defineScenario,
  validateScenario,
  isHttpUrl,
  ScenarioError,
  type ScenarioDefinition,
  type ScenarioRequest,
  type BurstSpec,
  type TrialContext,
  type CheckContext,
  type HttpReply,
} from './scenario.js';
export {
  runScenario,
  RunCapError,
  ARRIVAL_HEADER,
  erroredReport,
  type TrialPhase,
  type EvidenceResponse,
  type RunScenarioOptions,
  type ScenarioReport,
  type TrialReport,
} from './run-scenario.js';
export {
  atMostWinners,
  exactlyEffects,
  neverNegative,
  conservedSum,
  unique,
  matchesSuccesses,
  atMostEffects,
  winnersMatch,
  InvariantInputError,
  type ObservedResponse,
  type SentRequest,
  type Verdict,
} from './invariants.js';
export { loadScenarios, scenarioFiles, SCENARIO_EXTENSIONS } from './load.js';
export { scenarioFromJson } from './json-scenario.js';
export { burst, raceWindow, type BurstOptions } from './burst.js';
export {
  Http1BurstClient,
  BurstTransportError,
  type Http1BurstOptions,
  type WireRequest,
  type SyncResponse,
  type SyncBurstResult,
} from './http1.js';
export { Http2BurstClient, type Http2BurstOptions } from './http2.js';
export { toJUnit } from './report-junit.js';
export { toHtml } from './report-html.js';
export { percentile } from '../core/percentile.js';
