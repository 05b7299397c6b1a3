/** Load scenario files: TypeScript (no build step), JavaScript, or JSON. */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { messageOf } from '../arguments.js';
import { scenarioFromJson } from './json-scenario.js';
import { parseErrorPosition, withPosition } from './source-position.js';
import { ScenarioError, validateScenario, type ScenarioDefinition } from 'raceguard/run';

/** The file name endings `raceguard run` loads as scenarios. */
export const SCENARIO_EXTENSIONS: readonly string[] = [
  '.ts',
  '.mts',
  '.cts',
  '.js',
  '.mjs',
  '.cjs',
  '.json',
  '.yaml',
  '.yml',
];

/**
 * The scenario files an argument names: the file itself, or for a
 * directory every file in it (not its subdirectories) with a scenario
 * extension, except `.d.ts`, sorted by name.
 *
 * @example
 * ```ts
 * const files = await scenarioFiles('race/'); // ['race/checkout.json', 'race/last-unit.scenario.ts']
 * ```
 */
export async function scenarioFiles(argument: string): Promise<string[]> {
  const path = isAbsolute(argument) ? argument : resolve(process.cwd(), argument);
  const info = await stat(path).catch(() => undefined);
  if (info === undefined)
    throw new ScenarioError(argument, 'an existing file or directory', argument);
  if (!info.isDirectory()) return [argument];
  const names = (await readdir(path, { withFileTypes: true }))
    .filter(
      (entry) =>
        entry.isFile() &&
        SCENARIO_EXTENSIONS.includes(extname(entry.name).toLowerCase()) &&
        !entry.name.endsWith('.d.ts'),
    )
    .map((entry) => entry.name)
    .sort();
  if (names.length === 0) {
    throw new ScenarioError(
      argument,
      `a directory holding scenario files (${SCENARIO_EXTENSIONS.join(', ')})`,
      'a directory without any',
    );
  }
  return names.map((name) => join(argument, name));
}

/**
 * Import a scenario module of any flavour (TypeScript or JavaScript, ESM or
 * CommonJS, in an ESM or a CommonJS project) as ESM.
 *
 * The file and its relative imports are compiled by esbuild into one ESM
 * module, written next to the scenario (so packages resolve from where the
 * user's do; in a read-only folder, under `node_modules/.cache/raceguard`
 * of the working directory), imported from there and deleted. Packages stay imports: `raceguard/run`
 * is then the very module instance the CLI runs, and `undici`, `pg` and
 * the rest load once. (Loading a CommonJS `.ts` file through a require
 * hook instead compiled a second copy of raceguard and of undici, whose
 * private symbols then clash: "Illegal constructor".)
 */
async function importScenarioModule(path: string): Promise<unknown> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [path],
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    sourcemap: 'inline',
    logLevel: 'silent',
    // CommonJS-style code in an ESM module: `require`, `__dirname` and `__filename` as in the original.
    banner: {
      js: `import { createRequire as __raceguardCreateRequire } from 'node:module'; const require = __raceguardCreateRequire(${JSON.stringify(pathToFileURL(path).href)});`,
    },
    define: { __dirname: JSON.stringify(dirname(path)), __filename: JSON.stringify(path) },
  });
  const code = result.outputFiles[0]?.text ?? '';
  const name = `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.raceguard.mjs`;
  let compiled = join(dirname(path), name);
  try {
    await writeFile(compiled, code, { mode: 0o600 });
  } catch (error) {
    // A read-only scenario folder: packages resolve from the project's node_modules as well.
    if (!['EACCES', 'EPERM', 'EROFS'].includes((error as { code?: string }).code ?? ''))
      throw error;
    const cache = join(process.cwd(), 'node_modules', '.cache', 'raceguard');
    await mkdir(cache, { recursive: true });
    compiled = join(cache, name);
    await writeFile(compiled, code, { mode: 0o600 });
  }
  try {
    return (await import(pathToFileURL(compiled).href)) as unknown;
  } finally {
    await rm(compiled, { force: true });
  }
}

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
      const where = parseErrorPosition(format, text, error);
      throw new ScenarioError(
        where === undefined ? file : `${file}:${where.line}:${where.col}`,
        `valid ${format} (${messageOf(error)})`,
        text.slice(0, 40),
        { cause: error },
      );
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    return list.map((item, i) => {
      try {
        return scenarioFromJson(item, list.length > 1 ? `${file}[${i}]` : file);
      } catch (error) {
        // Say where the field is: line and column in the file.
        throw withPosition(error, text, Array.isArray(parsed) ? [i] : []);
      }
    });
  }
  if (!SCENARIO_EXTENSIONS.includes(extension)) {
    throw new ScenarioError(file, 'a .ts, .js, .json or .yaml scenario file', extension || file);
  }
  try {
    exported = await importScenarioModule(path);
  } catch (error) {
    if (error instanceof ScenarioError) throw error;
    throw new ScenarioError(file, `a module that loads (${messageOf(error)})`, file, {
      cause: error,
    });
  }
  let module = exported as Record<string, unknown>;
  // A CommonJS module's exports arrive as `default`; compiled ESM inside it carries `__esModule`.
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
