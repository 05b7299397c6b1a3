import { InvalidArgumentError } from '../core/errors.js';
import type { TraceStep } from './errors.js';

const PREFIX = 'rg1:';
/** No run of a test has this many steps: a longer replay is a mistake, not a schedule. */
const MAX_STEPS = 1_000_000;

/**
 * Encodes a list of chosen tasks as a replay string: `rg1:` then runs of
 * `task` or `task*count` in base 36, separated by dots (`rg1:0*3.1.0*2`).
 */
export function encodeSchedule(choices: readonly number[]): string {
  const parts: string[] = [];
  for (let index = 0; index < choices.length;) {
    const task = choices[index]!;
    let count = 1;
    while (choices[index + count] === task) count += 1;
    parts.push(count === 1 ? task.toString(36) : `${task.toString(36)}*${count.toString(36)}`);
    index += count;
  }
  return PREFIX + parts.join('.');
}

/** Reads a replay string written by {@link encodeSchedule}. */
export function decodeSchedule(replay: string): number[] {
  if (typeof replay !== 'string' || !replay.startsWith(PREFIX)) {
    throw new InvalidArgumentError(
      'options.replay',
      `a replay string starting with "${PREFIX}"`,
      replay,
    );
  }
  const body = replay.slice(PREFIX.length);
  const choices: number[] = [];
  if (body === '') return choices;
  for (const part of body.split('.')) {
    const match = /^([0-9a-z]+)(?:\*([0-9a-z]+))?$/.exec(part);
    if (match === null)
      throw new InvalidArgumentError(
        'options.replay',
        `runs like "0*3.1" after "${PREFIX}"`,
        replay,
      );
    const task = Number.parseInt(match[1]!, 36);
    const count = match[2] === undefined ? 1 : Number.parseInt(match[2], 36);
    if (count < 1 || choices.length + count > MAX_STEPS)
      throw new InvalidArgumentError(
        'options.replay',
        `a schedule of at most ${MAX_STEPS.toLocaleString('en')} steps`,
        replay.length > 80 ? `${replay.slice(0, 77)}...` : replay,
      );
    for (let index = 0; index < count; index += 1) choices.push(task);
  }
  return choices;
}

/**
 * The interleaving as a table: each step's task, where it resumed and where
 * it stopped next (its next point, `(done)`, or `(blocked)` for a task
 * that never finished: a deadlock's); `*` marks a preemption.
 */
export function formatTrace(
  trace: readonly TraceStep[],
  unfinished: ReadonlySet<number> = new Set(),
): string {
  const width = Math.max(4, ...trace.map((step) => step.taskName.length));
  const from = Math.max(13, ...trace.map((step) => step.label.length));
  const lines = [`  step  ${'task'.padEnd(width)}  ${'resumed after'.padEnd(from)}  ran until`];
  trace.forEach((step, index) => {
    const next = trace.slice(index + 1).find((later) => later.task === step.task);
    lines.push(
      `${step.preemption ? '*' : ' '} ${String(index + 1).padStart(4)}  ${step.taskName.padEnd(width)}  ` +
        `${step.label.padEnd(from)}  ${next?.label ?? (unfinished.has(step.task) ? '(blocked)' : '(done)')}`,
    );
  });
  lines.push('  (* = preemption: the previous task could have gone on)');
  return lines.join('\n');
}
