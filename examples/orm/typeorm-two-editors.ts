/**
 * Two editors save the same document through TypeORM, whose `@VersionColumn`
 * is incremented on save but never checked (typeorm#2848): with `save()` the
 * first editor's change silently disappears; with raceguard's `saveChecked`
 * the second editor is told, with the document as it is now.
 *
 *   npx tsx examples/orm/typeorm-two-editors.ts
 *
 * (uses DATABASE_URL, or starts an embedded PostgreSQL.)
 */
import { OptimisticConflictError, saveChecked } from 'raceguard/typeorm';
import { usePostgres } from 'raceguard/testing';
import { DataSource, EntitySchema } from 'typeorm';

interface Doc {
  id: number;
  title: string;
  version?: number;
}

// A @VersionColumn, written without decorators.
const Docs = new EntitySchema<Doc>({
  name: 'Doc',
  tableName: 'example_docs',
  columns: {
    id: { type: Number, primary: true },
    title: { type: String },
    version: { type: Number, version: true },
  },
});

await using server = await usePostgres();
const dataSource = new DataSource({ type: 'postgres', url: server.url, entities: [Docs] });
await dataSource.initialize();
try {
  await dataSource.query('DROP TABLE IF EXISTS example_docs');
  await dataSource.query(
    'CREATE TABLE example_docs (id int PRIMARY KEY, title text NOT NULL, version int NOT NULL)',
  );
  const docs = dataSource.getRepository(Docs);

  for (const save of ['save', 'saveChecked'] as const) {
    await docs.save({ id: 1, title: 'draft' });
    await dataSource.query('UPDATE example_docs SET title = $1, version = 1 WHERE id = 1', [
      'draft',
    ]);
    // Both editors open the document at version 1.
    const alice = await docs.findOneByOrFail({ id: 1 });
    const bob = await docs.findOneByOrFail({ id: 1 });
    alice.title = 'Alice: fixed the intro';
    bob.title = 'Bob: fixed a typo';
    const write = (doc: Doc) => (save === 'save' ? docs.save(doc) : saveChecked(docs, doc));
    await write(alice);
    try {
      await write(bob);
      console.log(`${save}: both saves succeeded`);
    } catch (error) {
      if (!(error instanceof OptimisticConflictError)) throw error;
      console.log(
        `${save}: Bob is told the document changed (now "${String(error.current?.title)}")`,
      );
    }
    const final = await docs.findOneByOrFail({ id: 1 });
    console.log(`${save}: the document reads "${final.title}"`);
  }
} finally {
  await dataSource.destroy();
}
