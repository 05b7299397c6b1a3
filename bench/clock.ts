/**
 * The hybrid logical clock's cost: `now()` beside its floor, `Date.now()`
 * plus an increment (what any timestamp with a tie-breaking counter costs),
 * side by side in one run; median of rounds.
 *
 *   npm run bench:clock [-- --iterations 5000000 --rounds 5 --json]
 */
import { parseArgs } from 'node:util';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { HybridLogicalClock, LamportClock } from '../packages/raceguard/dist/clock/index.js';
import { median } from './stats.js';

const { values: args } = parseArgs({
  options: {
    iterations: { type: 'string', default: '5000000' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const iterations = Number(args.iterations);
const rounds = Number(args.rounds);

let sink = 0;
const variants: Record<string, () => void> = {
  'Date.now() + increment (floor)': (() => {
    let counter = 0;
    return () => {
      sink += Date.now() + ++counter;
    };
  })(),
  'HybridLogicalClock.now()': (() => {
    const clock = new HybridLogicalClock();
    return () => {
      sink += clock.now().logical;
    };
  })(),
  'LamportClock.tick()': (() => {
    const clock = new LamportClock();
    return () => {
      sink += clock.tick();
    };
  })(),
};

const samples = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const [name, op] of Object.entries(variants)) {
    const started = performance.now();
    for (let i = 0; i < iterations; i++) op();
    const perSec = (iterations / (performance.now() - started)) * 1000;
    samples.set(name, [...(samples.get(name) ?? []), perSec]);
  }
}
const floor = median(samples.get('Date.now() + increment (floor)') ?? [0]);
const results = [...samples].map(([name, values]) => ({
  variant: name,
  opsPerSec: Math.round(median(values)),
  ratioToFloor: Math.round((median(values) / floor) * 100) / 100,
}));
if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['variant', 'ops/s', '× floor'],
      results.map((r) => [r.variant, r.opsPerSec.toLocaleString('en'), r.ratioToFloor.toFixed(2)]),
    )}\n\nfloor: Date.now() + an increment, ${Math.round(floor).toLocaleString('en')} ops/s; median of ${rounds} rounds of ${iterations.toLocaleString('en')} (sink ${sink > 0 ? 'used' : 'unused'})\n`,
  );
}
