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
 *
 * A block that can run against the test servers is marked `snippet run`
 * instead: the comment holds real code that runs before the block (making
 * the pool from DATABASE_URL, say) and, after a `---` line, code that runs
 * after it (closing it). Such blocks are also run, each in a process of its
 * own, in a scratch schema, and must exit 0.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, it } from 'node:test';
import { openTestDatabase } from '../helpers/database.js';
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
  /** For a `snippet run` block: the code after it (its context runs before it). */
  readonly after?: string;
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
    let after: string | undefined;
    if (lines[before]?.trim() === '-->') {
      const start = Math.max(
        lines.lastIndexOf('<!-- snippet context:', before),
        lines.lastIndexOf('<!-- snippet run:', before),
      );
      assert.ok(start >= 0, `${document}:${before + 1}: a comment that is no snippet context`);
      const body = lines.slice(start + 1, before);
      if (lines[start]?.startsWith('<!-- snippet run:') === true) {
        const split = body.indexOf('---');
        context = (split < 0 ? body : body.slice(0, split)).join('\n');
        after = split < 0 ? '' : body.slice(split + 1).join('\n');
      } else context = body.join('\n');
    }
    found.push({
      document,
      line: i + 1,
      context,
      code: lines.slice(i + 1, end).join('\n'),
      ...(after !== undefined && { after }),
    });
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
    // A runnable block's context is real code: it goes first, as when it runs.
    writeFileSync(
      file,
      snippet.after === undefined
        ? `${snippet.code}\n${snippet.context}\nexport {};\n`
        : `${runnable(snippet)}\nexport {};\n`,
    );
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
      const skipped = snippet?.after === undefined ? 0 : snippet.context.split('\n').length;
      const at = line - skipped;
      const where =
        snippet === undefined
          ? relative(repo, d.file?.fileName ?? '')
          : at >= 0 && at < snippet.code.split('\n').length
            ? `${snippet.document}:${snippet.line + 1 + at}`
            : `${snippet.document}:${snippet.line} (its context comment)`;
      return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  assert.deepEqual(problems, []);
});

/** A runnable block as one module: what runs before it, the block, what runs after it. */
function runnable(snippet: Snippet): string {
  return `${snippet.context}\n${snippet.code}\n${snippet.after ?? ''}`;
}

it(
  'every block marked to run runs against the test servers and exits 0',
  { timeout: 120_000 },
  async () => {
    const snippets = documents
      .flatMap((d) => snippetsOf(d, readFileSync(join(repo, d), 'utf8')))
      .filter((snippet) => snippet.after !== undefined);
    assert.ok(snippets.length >= 2, `found ${snippets.length} runnable blocks`);
    const db = await openTestDatabase(2);
    try {
      mkdirSync(work, { recursive: true });
      writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n');
      for (const [n, snippet] of snippets.entries()) {
        const file = join(work, `run-${n}.ts`);
        writeFileSync(file, `${runnable(snippet)}\nexport {};\n`);
        const result = spawnSync(
          process.execPath,
          ['--conditions=raceguard-source', '--import', 'tsx', file],
          {
            cwd: repo,
            encoding: 'utf8',
            timeout: 60_000,
            env: {
              ...process.env,
              DATABASE_URL: db.url,
              // node-postgres reads PGOPTIONS: the block works in the scratch schema.
              PGOPTIONS: `-c search_path=${db.schema}`,
            },
          },
        );
        assert.equal(
          result.status,
          0,
          `${snippet.document}:${snippet.line} exited ${result.status}: ${result.stderr}`,
        );
      }
    } finally {
      await db.close();
    }
  },
);

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
