/** Load scenario files: TypeScript (no build step), JavaScript, or JSON. */
import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { messageOf } from '../core/errors.js';
import { scenarioFromJson } from './json-scenario.js';
import { ScenarioError, validateScenario, type ScenarioDefinition } from './scenario.js';

/**
 * Load the scenarios of one file. A module exports a scenario (or an array
 * of them) as its default export or as `scenario` / `scenarios`; a `.json`
 * or `.yaml` file holds one scenario or an array (same fields). `.ts` files are compiled on the fly
 * (with `tsx`).
 *
 * @example
 * ```ts
 * const [scenario] = await loadScenarios('race/checkout.scenario.ts');
 * ```
 */
export async function loadScenarios(file: string): Promise<ScenarioDefinition[]> {
  const path = isAbsolute(file) ? file : resolve(process.cwd(), file);
  const extension = extname(path).toLowerCase();
  let exported: unknown;
  if (extension === '.json' || extension === '.yaml' || extension === '.yml') {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new ScenarioError(file, 'a readable file', file, { cause: error });
    }
    let parsed: unknown;
    const format = extension === '.json' ? 'JSON' : 'YAML';
    try {
      parsed = format === 'JSON' ? JSON.parse(text) : parseYaml(text);
    } catch (error) {
      throw new ScenarioError(file, `valid ${format} (${messageOf(error)})`, text.slice(0, 40), {
        cause: error,
      });
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    return list.map((item, i) => scenarioFromJson(item, list.length > 1 ? `${file}[${i}]` : file));
  }
  if (!['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'].includes(extension)) {
    throw new ScenarioError(file, 'a .ts, .js, .json or .yaml scenario file', extension || file);
  }
  try {
    if (extension.endsWith('ts')) {
      const { tsImport } = await import('tsx/esm/api');
      exported = await tsImport(pathToFileURL(path).href, import.meta.url);
    } else {
      exported = await import(pathToFileURL(path).href);
    }
  } catch (error) {
    if (error instanceof ScenarioError) throw error;
    throw new ScenarioError(file, `a module that loads (${messageOf(error)})`, file, {
      cause: error,
    });
  }
  let module = exported as Record<string, unknown>;
  // A .ts file outside an ESM package loads as CommonJS: its exports arrive wrapped in `default`.
  const inner = module.default as Record<string, unknown> | undefined;
  if (typeof inner === 'object' && inner !== null && inner.__esModule === true) module = inner;
  const found = module.default ?? module.scenario ?? module.scenarios;
  const list: unknown[] = Array.isArray(found) ? found : [found];
  if (found === undefined) {
    throw new ScenarioError(
      file,
      'a module whose default export is defineScenario({...})',
      Object.keys(module),
    );
  }
  list.forEach((item, i) => validateScenario(item, list.length > 1 ? `${file}[${i}]` : file));
  return list as ScenarioDefinition[];
}
