/**
 * Every TypeScript block of the README, the docs and the package READMEs
 * compiles against the library as users import it (`raceguard/...`,
 * `@raceguard/cli`), with the project's strict compiler options. A block may
 * name things it does not define (the `app`, the `pool`); an HTML comment
 * right before it declares them, invisible on the rendered page:
 *
 *     <!-- snippet context:
 *     declare const app: import('fastify').FastifyInstance;
 *     -->
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, it } from 'node:test';
import ts from 'typescript';

const repo = new URL('../../', import.meta.url).pathname;
const documents = [
  'README.md',
  'docs/idempotency.md',
  'docs/locks.md',
  'docs/run.md',
  'docs/messaging.md',
  'docs/cache.md',
  'docs/explore.md',
  'docs/check.md',
  'docs/conditional-writes.md',
  'docs/mysql.md',
  'docs/hot-row.md',
  'docs/observability.md',
  'docs/orm.md',
  'docs/benchmarks.md',
  'packages/raceguard/README.md',
  'packages/cli/README.md',
];

interface Snippet {
  readonly document: string;
  /** Line of the opening fence in the document (1-based). */
  readonly line: number;
  readonly context: string;
  readonly code: string;
}

/** The ```ts blocks of a Markdown document, each with its context comment. */
export function snippetsOf(document: string, text: string): Snippet[] {
  const lines = text.split('\n');
  const found: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const end = lines.indexOf('```', i + 1);
    assert.ok(end > i, `${document}:${i + 1}: unclosed code block`);
    let context = '';
    let before = i - 1;
    while (before >= 0 && lines[before]?.trim() === '') before--;
    if (lines[before]?.trim() === '-->') {
      const start = lines.lastIndexOf('<!-- snippet context:', before);
      assert.ok(start >= 0, `${document}:${before + 1}: a comment that is no snippet context`);
      context = lines.slice(start + 1, before).join('\n');
    }
    found.push({ document, line: i + 1, context, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return found;
}

const work = join(repo, 'node_modules', '.cache', `raceguard-snippets-${process.pid}`);
after(() => rmSync(work, { recursive: true, force: true }));

it('every TypeScript block in the README and the docs compiles', () => {
  const snippets = documents.flatMap((d) => snippetsOf(d, readFileSync(join(repo, d), 'utf8')));
  assert.ok(snippets.length >= 15, `found ${snippets.length} blocks`);
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n');
  const files = new Map<string, Snippet>();
  snippets.forEach((snippet, n) => {
    const file = join(work, `snippet-${n}.ts`);
    // The code first, so that its line numbers are the document's; the context after it
    // (declarations are hoisted). `export {}` makes even an import-free block a module.
    writeFileSync(file, `${snippet.code}\n${snippet.context}\nexport {};\n`);
    files.set(file, snippet);
  });
  const config = ts.getParsedCommandLineOfConfigFile(
    join(repo, 'tsconfig.json'),
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined },
  );
  assert.ok(config);
  const program = ts.createProgram([...files.keys()], {
    ...config.options,
    rootDir: repo,
    noEmit: true,
    // Resolve raceguard as an installed copy would, without building it first.
    customConditions: ['raceguard-source'],
    noUnusedLocals: false,
  });
  const problems = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file !== undefined && files.has(d.file.fileName))
    .map((d) => {
      const snippet = files.get(d.file?.fileName ?? '');
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      const where =
        snippet === undefined
          ? relative(repo, d.file?.fileName ?? '')
          : line < snippet.code.split('\n').length
            ? `${snippet.document}:${snippet.line + 1 + line}`
            : `${snippet.document}:${snippet.line} (its context comment)`;
      return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  assert.deepEqual(problems, []);
});

it('control: a block that uses an undeclared name or a wrong option is reported', () => {
  const [snippet] = snippetsOf(
    'control.md',
    ['```ts', "import { atomicDecrement } from 'raceguard/postgres';", '```'].join('\n'),
  );
  assert.equal(snippet?.code, "import { atomicDecrement } from 'raceguard/postgres';");
  mkdirSync(work, { recursive: true });
  const file = join(work, 'control.ts');
  writeFileSync(
    file,
    "import { atomicDecrement } from 'raceguard/postgres';\nawait atomicDecrement(pool, { table: 't', key: { id: 1 }, column: 'c', amout: 1 });\nexport {};\n",
  );
  const program = ts.createProgram([file], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    types: ['node'],
    customConditions: ['raceguard-source'],
    skipLibCheck: true,
  });
  const messages = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file?.fileName === file)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
  assert.ok(
    messages.some((m) => /Cannot find name 'pool'/.test(m)),
    messages.join('\n'),
  );
  assert.ok(
    messages.some((m) => /amout/.test(m)),
    messages.join('\n'),
  );
});
