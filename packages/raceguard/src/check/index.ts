/**
 * `raceguard/check`: is a recorded history linearizable? A checker with
 * memoised search and partitioning by key, models (register with
 * compare-and-set, key-value map), and readers of Jepsen's etcd logs and
 * Porcupine's key-value histories. No dependencies.
 *
 * @packageDocumentation
 */
export {
  checkLinearizable,
  type Operation,
  type Model,
  type Verdict,
  type CheckOptions,
  type CheckResult,
} from './linearizability.js';
export {
  registerModel,
  kvModel,
  counterModel,
  setModel,
  queueModel,
  MODELS,
  modelByName,
  operationsMisfit,
  type ModelName,
  type RegisterInput,
  type RegisterOutput,
  type KvInput,
  type CounterInput,
  type SetInput,
  type QueueInput,
} from './models.js';
export { parseJepsenRegister, parsePorcupineKv, HistoryFormatError } from './formats.js';
export {
  checkTransactions,
  type Transaction,
  type MicroOp,
  type Anomaly,
  type AnomalyType,
  type CycleStep,
  type EdgeType,
  type TransactionCheckOptions,
  type TransactionCheckResult,
} from './anomalies.js';
