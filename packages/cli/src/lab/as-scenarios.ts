/**
 * The lab's scenarios as `raceguard run` scenario definitions, so the CLI
 * and `runScenario` run them against a lab server like any other API.
 */
import { InvalidArgumentError } from 'raceguard';
import { type Verdict, defineScenario, type ScenarioDefinition } from 'raceguard/run';
import { appliesTo, STRATEGIES, type Strategy } from './scenario.js';
import { SCENARIOS } from './scenarios/index.js';

/** Options of {@link labScenarios}. */
export interface LabScenariosOptions {
  /** Scenario names. @default all */
  readonly scenarios?: readonly string[];
  /** Strategies; each scenario runs those that apply to it. @default the database strategies */
  readonly strategies?: readonly Strategy[];
  /** Requests per burst. @default 100 */
  readonly concurrency?: number;
  /** Bursts per scenario and strategy. @default 5 */
  readonly trials?: number;
}

/**
 * One scenario definition per lab scenario and strategy, against the lab
 * server at `target` (`raceguard lab --serve`). Setup resets the scenario
 * through the server, the burst posts its requests, and the check asks the
 * server for the scenario's invariants; each anomaly kind becomes a verdict.
 *
 * @example
 * ```ts
 * // race/lab.scenario.ts
 * export default labScenarios('http://127.0.0.1:4100', { scenarios: ['inventory'], concurrency: 50 });
 * ```
 */
export function labScenarios(
  target: string,
  options: LabScenariosOptions = {},
): ScenarioDefinition[] {
  const concurrency = options.concurrency ?? 100;
  const strategies = options.strategies ?? STRATEGIES;
  const scenarios =
    options.scenarios === undefined
      ? SCENARIOS
      : options.scenarios.map((name) => {
          const found = SCENARIOS.find((s) => s.name === name);
          if (found === undefined) {
            throw new InvalidArgumentError(
              'options.scenarios',
              `names among ${SCENARIOS.map((s) => s.name).join(', ')}`,
              name,
            );
          }
          return found;
        });
  return scenarios.flatMap((scenario) =>
    strategies
      .filter((strategy) => appliesTo(scenario, strategy))
      .map((strategy) =>
        defineScenario({
          name: `${scenario.name}/${strategy}`,
          target,
          trials: options.trials ?? 5,
          setup: async ({ http, state }) => {
            const reply = await http({
              path: `/lab/${scenario.name}/${strategy}/reset`,
              json: { concurrency },
            });
            if (reply.status !== 200)
              throw new Error(`lab reset answered ${reply.status}: ${reply.text}`);
            state.requests = (reply.json as { requests: unknown[] }).requests;
          },
          burst: {
            count: concurrency,
            request: (i, { state }) => ({
              path: `/scenarios/${scenario.name}/${strategy}`,
              json: (state.requests as unknown[])[i],
            }),
          },
          check: async ({ http, responses, state }) => {
            const requests = state.requests as unknown[];
            const reply = await http({
              path: `/lab/${scenario.name}/check`,
              json: {
                concurrency,
                responses: responses.map((r) => ({
                  status: r.status,
                  body: r.json,
                  request: requests[r.index],
                })),
              },
            });
            if (reply.status !== 200)
              throw new Error(`lab check answered ${reply.status}: ${reply.text}`);
            const anomalies = Object.entries(
              (reply.json as { anomalies: Record<string, number> }).anomalies,
            );
            const serverErrors = responses.filter((r) => r.status === 0 || r.status >= 500).length;
            const verdicts: Verdict[] = anomalies.map(([kind, count]) => ({
              invariant: kind,
              ok: false,
              detail: `${kind} ×${count} (${scenario.invariant})`,
            }));
            verdicts.push({
              invariant: 'no-server-errors',
              ok: serverErrors === 0,
              detail:
                serverErrors === 0
                  ? 'no 5xx'
                  : `${serverErrors} request(s) failed with 5xx or at the transport level`,
            });
            if (anomalies.length === 0)
              verdicts.push({ invariant: 'invariants', ok: true, detail: scenario.invariant });
            return verdicts;
          },
        }),
      ),
  );
}
