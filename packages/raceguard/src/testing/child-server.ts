/**
 * The two halves every throwaway server shares: waiting until the process
 * just spawned answers (or failing clearly when it exits, cannot be
 * spawned, or stays silent), and stopping it.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { sleep } from '../core/abort.js';
import { messageOf } from '../core/errors.js';

/** Options of {@link untilReady}. */
export interface UntilReadyOptions {
  /** Whether the server answers yet. */
  readonly ready: () => Promise<boolean>;
  readonly timeoutMs: number;
  /** Pause between two looks. @default 50 */
  readonly pollMs?: number;
  /** The error when the process exited or could not be spawned (`why` says which). */
  readonly exited: (why: string, cause: unknown) => Error;
  /** The error when it did not answer in time (it is then killed). */
  readonly silent: () => Error;
  /** A folder of the server's to remove on failure. */
  readonly dir?: string;
  /** How to kill it on time-out. @default child.kill('SIGKILL') */
  readonly kill?: () => void;
}

/** Wait until `ready()` answers while `child` lives; on failure, nothing is left running or on disk. */
export async function untilReady(child: ChildProcess, options: UntilReadyOptions): Promise<void> {
  let failure: unknown;
  child.once('error', (error) => (failure = error));
  const started = performance.now();
  const clean = (): void => {
    if (options.dir !== undefined) rmSync(options.dir, { recursive: true, force: true });
  };
  while (!(await options.ready())) {
    if (failure !== undefined || child.exitCode !== null) {
      clean();
      throw options.exited(
        failure === undefined ? `exited with ${child.exitCode}` : messageOf(failure),
        failure,
      );
    }
    if (performance.now() - started > options.timeoutMs) {
      if (options.kill !== undefined) options.kill();
      else child.kill('SIGKILL');
      clean();
      throw options.silent();
    }
    await sleep(options.pollMs ?? 50);
  }
}

/**
 * How to stop `child`: resume it if paused, `SIGTERM`, wait for its exit,
 * then remove `dir`. Idempotent.
 */
export function stopper(child: ChildProcess, dir?: string): () => Promise<void> {
  let stopped: Promise<void> | undefined;
  return () =>
    (stopped ??= new Promise<void>((resolve) => {
      const done = (): void => {
        if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', done);
      child.kill('SIGCONT');
      child.kill('SIGTERM');
    }));
}
