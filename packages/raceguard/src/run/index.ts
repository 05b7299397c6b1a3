/**
 * `raceguard/run`: the scenario contract of `raceguard run`. A scenario file
 * imports `defineScenario` and the invariant helpers from here; the engine
 * that fires the bursts (`runScenario`, `burst`, the HTTP/1.1 and HTTP/2
 * burst clients, the reports) lives in the `@raceguard/cli` package, with
 * the command itself.
 *
 * @packageDocumentation
 */
export {
  defineScenario,
  validateScenario,
  validateDelays,
  validateRequest,
  validateVerdicts,
  isHttpUrl,
  ScenarioError,
  type ScenarioDefinition,
  type ScenarioRequest,
  type BurstSpec,
  type HistorySpec,
  type TrialContext,
  type CheckContext,
  type HttpReply,
} from './scenario.js';
export { raceWindow } from './race-window.js';
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
