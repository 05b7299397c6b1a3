import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The folder of recorded histories with known verdicts (Porcupine's test
 * data): `RACEGUARD_HISTORIES`, or a `shared/histories/porcupine` beside any
 * folder above this checkout (the workspace layout), or the workspace's own.
 * `undefined` when there is none: the ground-truth tests then say so and
 * skip.
 */
export function findHistories(): string | undefined {
  const candidates: string[] = [];
  if (process.env.RACEGUARD_HISTORIES) candidates.push(process.env.RACEGUARD_HISTORIES);
  let folder = new URL('../..', import.meta.url).pathname;
  for (;;) {
    candidates.push(join(folder, 'shared', 'histories', 'porcupine'));
    const parent = dirname(folder);
    if (parent === folder) break;
    folder = parent;
  }
  candidates.push('/work/shared/histories/porcupine');
  const found = candidates.find((c) => existsSync(join(c, 'expected.json')));
  return found === undefined ? undefined : `${found.replace(/\/$/, '')}/`;
}
