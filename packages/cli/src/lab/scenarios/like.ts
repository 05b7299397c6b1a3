import {
  atomicIncrement,
  optimisticUpdate,
  recreateTables,
  transaction,
  truncate,
  type LabDb,
} from '../sql.js';
import { accepted, countAnomaly, scalar, type Scenario } from '../scenario.js';

const alreadyLiked = async (db: LabDb, postId: unknown, user: unknown): Promise<boolean> =>
  (await db.query('SELECT 1 FROM like_likes WHERE post_id = $1 AND user_id = $2', [postId, user]))
    .rows.length > 0;

/** Double clicks on "like": every user sends two requests at once. */
export const like: Scenario = {
  name: 'like',
  title: 'like a post',
  invariant: 'at most one like per user; like count == distinct likers',
  async createSchema(db, strategy) {
    // The atomic fix is a uniqueness constraint plus an insert that skips a
    // duplicate; the other variants run on the schema as people first write
    // it, without one.
    await recreateTables(
      db,
      ['like_likes', 'like_posts'],
      [
        'CREATE TABLE like_posts (id int PRIMARY KEY, like_count int NOT NULL DEFAULT 0, version int NOT NULL DEFAULT 0)',
        `CREATE TABLE like_likes (post_id int NOT NULL, user_id varchar(64) NOT NULL
          ${strategy === 'atomic' ? ', PRIMARY KEY (post_id, user_id)' : ''})`,
      ],
    );
  },
  async seed(db) {
    await truncate(db, 'like_likes', 'like_posts');
    await db.query('INSERT INTO like_posts (id) VALUES (1)');
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({
      postId: 1,
      userId: `u-${Math.floor(i / 2)}`,
    })),
  target: (request) => ({
    table: 'like_posts',
    key: { id: Number(request.postId) },
    lockKey: `like:${Number(request.postId)}:${String(request.userId)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    if (await alreadyLiked(db, row.id, request.userId))
      return { status: 422, body: { error: 'already-liked' } };
    await gap();
    await db.query('INSERT INTO like_likes (post_id, user_id) VALUES ($1, $2)', [
      row.id,
      request.userId,
    ]);
    await db.query('UPDATE like_posts SET like_count = like_count + 1 WHERE id = $1', [row.id]);
    return { status: 200, body: { liked: true } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        // PostgreSQL's ON CONFLICT DO NOTHING; MySQL's INSERT IGNORE (which would also
        // hide other errors on a table with more constraints than this key).
        const inserted = await tx.query(
          tx.dialect === 'postgres'
            ? 'INSERT INTO like_likes (post_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING'
            : 'INSERT IGNORE INTO like_likes (post_id, user_id) VALUES ($1, $2)',
          [request.postId, request.userId],
        );
        if (inserted.rowCount !== 1) return { status: 422, body: { error: 'already-liked' } };
        await atomicIncrement(tx, {
          table: 'like_posts',
          key: { id: Number(request.postId) },
          column: 'like_count',
          amount: 1,
        });
        return { status: 200, body: { liked: true } };
      },
      retryOptions,
    );
  },
  optimistic(request, { pool, gap, retryOptions }) {
    // The post's version guards the user's like too: any like bumps it.
    return transaction(
      pool,
      async (tx) => {
        const result = await optimisticUpdate(tx, {
          ...retryOptions,
          table: 'like_posts',
          key: { id: Number(request.postId) },
          update: async (row) => {
            if (await alreadyLiked(tx, row.id, request.userId)) return null;
            await gap();
            return { like_count: Number(row.like_count) + 1 };
          },
        });
        if (!result.applied) return { status: 422, body: { error: 'already-liked' } };
        await tx.query('INSERT INTO like_likes (post_id, user_id) VALUES ($1, $2)', [
          request.postId,
          request.userId,
        ]);
        return { status: 200, body: { liked: true } };
      },
      { isolation: 'read committed' },
    );
  },
  async check(db, responses) {
    const anomalies = {};
    const likes = await scalar(db, 'SELECT count(*) FROM like_likes');
    const likers = await scalar(db, 'SELECT count(DISTINCT user_id) FROM like_likes');
    const likeCount = await scalar(db, 'SELECT like_count FROM like_posts WHERE id = 1');
    countAnomaly(anomalies, 'duplicate-like', likes - likers);
    countAnomaly(anomalies, 'count-mismatch', Math.abs(likeCount - likers));
    countAnomaly(anomalies, 'responses-likes-mismatch', Math.abs(accepted(responses) - likers));
    return anomalies;
  },
};
