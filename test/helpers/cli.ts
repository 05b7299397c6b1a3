import { spawn, type ChildProcess } from 'node:child_process';

/** What a run of the CLI printed and how it exited. */
export interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run `raceguard <args>` from the sources in a child process. Asynchronous,
 * so servers running in the test's own process keep serving meanwhile.
 * `onStderr` sees the standard error so far after each chunk (to act on a
 * line the command prints, such as an address, or to interrupt it);
 * `onSpawn` gets the child as soon as it starts (to signal it on an event of
 * the test's own).
 */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  onStderr?: (stderr: string, child: ChildProcess) => void,
  onSpawn?: (child: ChildProcess) => void,
): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=raceguard-source',
        '--import',
        'tsx',
        'packages/cli/src/commands/main.ts',
        ...args,
      ],
      {
        env: { ...process.env, ...env },
      },
    );
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      onStderr?.(stderr, child);
    });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
