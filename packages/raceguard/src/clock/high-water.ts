/**
 * A high-water mark kept in a file, written durably: a temporary file,
 * fsync, rename over the old one, fsync of the directory. The clock saves
 * once per window (half the clock's `maxOffsetMs` by default), so the cost of a durable write is paid
 * rarely.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { assertNonEmptyString } from '../core/validate.js';
import type { HighWaterStore } from './hlc.js';

/**
 * A {@link HighWaterStore} in the file at `path` (its directory must exist).
 *
 * @example
 * ```ts
 * const clock = new HybridLogicalClock({ highWater: fileHighWater('/var/lib/app/hlc-mark') });
 * ```
 */
export function fileHighWater(path: string): HighWaterStore {
  assertNonEmptyString('path', path);
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
      // An empty or garbled file is not "no mark": a crash may have left it,
      // and guessing could step the clock back.
      if (!/^\d{1,16}\n?$/.test(text)) {
        throw new Error(`${path} holds ${JSON.stringify(text.slice(0, 40))}, not a wall time`);
      }
      return Number(text.trim());
    },
    save(wallMs) {
      const temporary = `${path}.${process.pid}.tmp`;
      const fd = openSync(temporary, 'w');
      try {
        writeSync(fd, `${wallMs}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, path);
      const directory = openSync(dirname(path), 'r');
      try {
        fsyncSync(directory);
      } finally {
        closeSync(directory);
      }
    },
  };
}
