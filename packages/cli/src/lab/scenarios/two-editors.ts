import type { ConditionalWrites } from 'raceguard/http';
import { countAnomaly, type Scenario } from '../scenario.js';
import { conditionalRows, recreateTables, truncate, type LabKey, type LabPool } from '../sql.js';

const documents = new WeakMap<LabPool, ConditionalWrites<LabKey>>();

/** The conditional writes of the documents table, one per pool. */
function documentsOf(pool: LabPool): ConditionalWrites<LabKey> {
  let found = documents.get(pool);
  if (found === undefined) {
    found = conditionalRows(pool, 'editors_documents');
    documents.set(pool, found);
  }
  return found;
}

/**
 * Editors who all loaded version 1 of a document save their edits at once.
 * Unsafe, the last save wins and every other editor was told "saved"; with
 * ETags (`If-Match: "1"`, the version-check fix over HTTP) one save wins and
 * every other editor gets 412 Precondition Failed with the current ETag.
 */
export const twoEditors: Scenario = {
  name: 'two-editors',
  title: 'two editors save one document',
  invariant:
    'exactly one save of the version everyone loaded succeeds and is the document; every other editor gets 412, no edit vanishes silently',
  strategies: ['unsafe', 'optimistic'],
  async createSchema(db) {
    await recreateTables(
      db,
      ['editors_documents'],
      [
        `CREATE TABLE editors_documents (id int PRIMARY KEY, title varchar(200) NOT NULL, edited_by varchar(64),
          version int NOT NULL DEFAULT 1)`,
      ],
    );
  },
  async seed(db) {
    await truncate(db, 'editors_documents');
    await db.query(`INSERT INTO editors_documents (id, title) VALUES (1, 'draft')`);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({
      documentId: 1,
      editor: `editor-${i}`,
      title: `title by editor-${i}`,
      ifMatch: '"1"', // every editor loaded version 1
    })),
  target: (request) => ({
    table: 'editors_documents',
    key: { id: Number(request.documentId) },
    lockKey: `document:${Number(request.documentId)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    // Last write wins: the version the editor loaded is never compared.
    await gap();
    await db.query('UPDATE editors_documents SET title = $2, edited_by = $3 WHERE id = $1', [
      row.id,
      request.title,
      request.editor,
    ]);
    return { status: 200, body: { saved: true } };
  },
  atomic(request, context) {
    return this.optimistic(request, context);
  },
  async optimistic(request, { pool }) {
    const response = await documentsOf(pool).update(
      { id: Number(request.documentId) },
      { title: request.title, edited_by: request.editor },
      { 'if-match': String(request.ifMatch) },
    );
    const body = JSON.parse(String(response.body)) as Record<string, unknown>;
    return response.status === 200
      ? { status: 200, body: { saved: true, etag: response.headers.etag } }
      : { status: 412, body: { ...body, etag: response.headers.etag } };
  },
  async check(db, responses) {
    const anomalies = {};
    const { rows } = await db.query('SELECT edited_by FROM editors_documents WHERE id = 1');
    const saved = responses.filter((r) => r.status === 200);
    countAnomaly(anomalies, 'lost-edit', saved.length - 1);
    countAnomaly(anomalies, 'no-save', saved.length === 0 ? 1 : 0);
    countAnomaly(
      anomalies,
      'unexpected-response',
      responses.filter((r) => r.status !== 200 && r.status !== 412).length,
    );
    if (saved.length === 1 && rows[0]?.edited_by !== saved[0]?.request.editor)
      countAnomaly(anomalies, 'final-state-mismatch', 1);
    return anomalies;
  },
};
