/**
 * The source folders depend on one another without a cycle, and the
 * backend-free core depends on none of them.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { it } from 'node:test';

const SRC = new URL('../../src/', import.meta.url).pathname;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** folder -> folders it imports from (relative imports only). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of files(SRC)) {
    const from = relative(SRC, file).split(sep)[0] ?? '';
    if (from.endsWith('.ts')) continue; // src/index.ts: the root barrel
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const [, target] of readFileSync(file, 'utf8').matchAll(/from '(\.\.\/[^']+)'/g)) {
      const to = relative(SRC, join(file, '..', target ?? '')).split(sep)[0] ?? '';
      if (to !== from && !to.endsWith('.js')) edges.add(to);
    }
  }
  return graph;
}

it('the core imports no adapter, and no two source folders import each other in a cycle', () => {
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

it('the lab and the CLI use raceguard as a customer does: only its public entry points', () => {
  const deep: string[] = [];
  for (const folder of ['lab', 'cli']) {
    for (const file of files(join(SRC, folder))) {
      const text = readFileSync(file, 'utf8');
      for (const [, target] of text.matchAll(/(?:from |import\()'(\.\.\/[^']+)'/g)) {
        const resolved = relative(SRC, join(file, '..', target ?? ''));
        const [top, ...rest] = resolved.split(sep);
        if (top === folder || rest.length === 0) continue; // its own files; the root barrel
        // Public: a subpath's index.js, or a test-server starter (raceguard/<backend>/server).
        if (rest.length === 1 && (rest[0] === 'index.js' || rest[0] === 'server.js')) continue;
        deep.push(`${relative(SRC, file)} imports ${target ?? ''}`);
      }
    }
  }
  assert.deepEqual(deep, []);
});
