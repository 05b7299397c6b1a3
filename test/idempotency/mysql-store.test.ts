import { after, before, describe } from 'node:test';
import {
  MysqlIdempotencyStore,
  createMysqlIdempotencyTable,
} from '../../packages/raceguard/src/mysql/index.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';
import { storeContract } from './store-contract.js';

describe('MysqlIdempotencyStore (MariaDB)', () => {
  let db: TestMysql;
  let store: MysqlIdempotencyStore;
  before(async () => {
    db = await openTestMysql(40);
    await createMysqlIdempotencyTable(db.pool);
    await createMysqlIdempotencyTable(db.pool); // idempotent migration
    store = new MysqlIdempotencyStore({ client: db.pool });
  });
  after(() => db.close());

  storeContract(
    () => store,
    (extra) => new MysqlIdempotencyStore({ client: db.pool, ...extra }),
  );
});
