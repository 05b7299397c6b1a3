import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';

/** Debian's Chromium binary, when installed. */
export const CHROMIUM = ['chromium', 'chromium-browser'].find(
  (binary) => spawnSync(binary, ['--version']).status === 0,
);

/** Run a headless Chromium with a profile in `dir`, on a machine with no network. */
export function chromium(dir: string, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(
    CHROMIUM ?? 'chromium',
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${join(dir, 'profile')}`,
      ...args,
    ],
    { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
  );
}
