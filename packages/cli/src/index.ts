/**
 * `@raceguard/cli`: the `raceguard` command (`raceguard run`, `raceguard
 * lab`, `raceguard idempotency`) and its engine as a library: run scenarios
 * from tests, fire synchronised HTTP/1.1 and HTTP/2 bursts, write JUnit and
 * HTML reports. The race lab is `@raceguard/cli/lab`. Scenarios themselves
 * are declared with `defineScenario` from `raceguard/run`.
 *
 * @packageDocumentation
 */
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
} from './run/run-scenario.js';
export { loadScenarios, scenarioFiles, SCENARIO_EXTENSIONS } from './run/load.js';
export { scenarioFromJson } from './run/json-scenario.js';
export { burst, type BurstOptions } from './run/burst.js';
export {
  Http1BurstClient,
  BurstTransportError,
  type Http1BurstOptions,
  type WireRequest,
  type SyncResponse,
  type SyncBurstResult,
} from './run/http1.js';
export { Http2BurstClient, type Http2BurstOptions } from './run/http2.js';
export { toJUnit } from './run/report-junit.js';
export { toHtml } from './run/report-html.js';
export { percentile } from './run/percentile.js';
export { startPgProxy, type PgProxy, type PgProxyOptions } from './proxy/proxy.js';
export {
  auditScenario,
  type AuditOptions,
  type AuditResult,
  type AuditFinding,
} from './proxy/audit.js';
export { parseDbDelay, type DbDelay } from './proxy/db-delays.js';
export type { RecordedStatement, Recording } from './proxy/recorder.js';
export type { StatementShape } from './proxy/statements.js';
export type { Anomaly } from './proxy/race-analysis.js';
