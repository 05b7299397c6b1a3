/**
 * The race lab's scenarios as `raceguard run` scenario files:
 *
 *   npx raceguard lab --serve                 # in one terminal (port 4100)
 *   npx raceguard run examples/race/lab.scenario.ts
 *
 * Every unsafe variant should be reported as a race (exit 1) and every fix
 * as clean. LAB_SCENARIOS=inventory,bank narrows the set.
 */
import { labScenarios } from '@raceguard/cli/lab';

export default labScenarios(process.env.LAB_URL ?? 'http://127.0.0.1:4100', {
  concurrency: 50,
  trials: 3,
  ...(process.env.LAB_SCENARIOS !== undefined && {
    scenarios: process.env.LAB_SCENARIOS.split(','),
  }),
});
