/**
 * The Lua scripts of `LeaseCache`, and the Redis layout they share.
 *
 * A cache key k is stored under its identity `{enc(k)}` (`enc` escapes `%`
 * and `}`, so distinct keys never share an identity, and the braces make it
 * the Redis Cluster hash tag). For an identity i and the cache's prefix p:
 * `p v:i` the fresh value (expires after ttlMs), `p s:i` a stale copy (after
 * ttlMs + staleMs; only with staleMs), `p l:i` the fill lease (and the
 * channel fills are announced on), `p e:i` the failure of the last fill
 * (for the callers that waited behind it), `p n:i` the version of the last
 * write-through. A tag t is the set `p t:{enc(t)}` of the identities filled
 * or written with it. Every change of a value is announced on the cache's
 * bus channel (`p bus`) as a JSON array of identities, for in-process tiers.
 */
import { LuaScript } from '../redis/shared.js';

/** The identity of a key or tag: injective, one Cluster hash tag. */
export function identityOf(name: string): string {
  return `{${name.replaceAll('%', '%25').replaceAll('}', '%7D')}}`;
}

/** The key or tag an identity stands for (inverse of {@link identityOf}). */
export function nameOf(identity: string): string {
  return identity.slice(1, -1).replaceAll('%7D', '}').replaceAll('%25', '%');
}

/** Register the identity ARGV[i] in the tag sets KEYS[from..], kept ARGV[i+1] ms at least. */
const REGISTER_TAGS = `
local function register(from, id, keep)
  for t = from, #KEYS do
    redis.call('SADD', KEYS[t], id)
    if redis.call('PTTL', KEYS[t]) < tonumber(keep) then redis.call('PEXPIRE', KEYS[t], keep) end
  end
end
`;

/**
 * KEYS: v, s, l, e, tag sets... ARGV: token, leaseMs, identity, keep, the
 * lease token this caller waited behind ('' if none).
 * A lease granted registers the key in its tags first: an invalidation of a
 * tag voids every fill that began before it. A caller that waited behind a
 * fill that failed gets `{'failed', message}` (see FAIL); `{'wait', token}`
 * names the fill to wait behind.
 */
export const GET_OR_LEASE = new LuaScript(`${REGISTER_TAGS}
local v = redis.call('GET', KEYS[1])
if v then return {'hit', v} end
if ARGV[5] ~= '' then
  local e = redis.call('GET', KEYS[4])
  if e and string.sub(e, 1, #ARGV[5] + 1) == ARGV[5] .. ':' then
    return {'failed', string.sub(e, #ARGV[5] + 2)}
  end
end
local s = redis.call('GET', KEYS[2])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  register(5, ARGV[3], ARGV[4])
  if s then return {'stale-lease', s} end
  return {'lease'}
end
if s then return {'stale', s} end
return {'wait', redis.call('GET', KEYS[3]) or ''}
`);

/**
 * KEYS: v, s, l, e. ARGV: token, message, ms.
 * The fill of `token` failed: end its lease and leave the failure, for `ms`,
 * to the callers that waited behind it (and only to them: a caller that
 * comes later tries the loader itself).
 */
export const FAIL = new LuaScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[4], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', KEYS[3], '1')
return 1
`);

/** KEYS: v, s, l. ARGV: token, value, ttlMs, staleMs, bus channel, bus message. */
export const FILL = new LuaScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', KEYS[3], '1')
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`);

/** KEYS: v, s, l. ARGV: token. */
export const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', KEYS[3], '1')
  return 1
end
return 0
`);

/** In 'mark' mode: the stale copy KEYS[k] lives at most ARGV[a] ms from now (staleMs), however long its TTL was. */
const CAP_STALE = `
local function cap(key, staleMs)
  local left = redis.call('PTTL', key)
  if left > tonumber(staleMs) or left == -1 then redis.call('PEXPIRE', key, staleMs) end
end
`;

/**
 * KEYS: v, s, l. ARGV: mode ('delete' | 'mark'), bus channel, bus message,
 * staleMs.
 * Voids every outstanding lease of the key: a fill that began before cannot
 * land. 'mark' keeps the stale copy for callers within staleMs (two-phase
 * invalidation): at most staleMs from now, whatever the refresh takes.
 */
export const INVALIDATE = new LuaScript(`${CAP_STALE}
redis.call('DEL', KEYS[3], KEYS[1])
if ARGV[1] ~= 'mark' then redis.call('DEL', KEYS[2]) else cap(KEYS[2], ARGV[4]) end
redis.call('PUBLISH', KEYS[3], '1')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`);

/**
 * KEYS: the tag set. ARGV: prefix, mode, bus channel, staleMs.
 * INVALIDATE for every key of the tag, in one atomic step; returns their
 * identities. The keys live
 * outside the tag's hash slot: tags need a single Redis, not a Cluster.
 */
export const INVALIDATE_TAG = new LuaScript(`${CAP_STALE}
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. 'v:' .. id, ARGV[1] .. 'l:' .. id)
  if ARGV[2] ~= 'mark' then redis.call('DEL', ARGV[1] .. 's:' .. id) else cap(ARGV[1] .. 's:' .. id, ARGV[4]) end
  redis.call('PUBLISH', ARGV[1] .. 'l:' .. id, '1')
end
redis.call('DEL', KEYS[1])
if #ids > 0 then redis.call('PUBLISH', ARGV[3], cjson.encode(ids)) end
return ids
`);

/**
 * KEYS: v, s, l, n, tag sets... ARGV: value, version (decimal digits),
 * ttlMs, staleMs, bus channel, bus message, identity, keep.
 * Stores only a newer version (compared as decimal strings: bigints stay
 * exact), and voids leases (a fill in flight carries older data).
 */
export const WRITE = new LuaScript(`${REGISTER_TAGS}
local current = redis.call('GET', KEYS[4])
if current and (#current > #ARGV[2] or (#current == #ARGV[2] and current >= ARGV[2])) then
  return 0
end
local keep = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', keep) end
redis.call('SET', KEYS[4], ARGV[2], 'PX', keep)
register(5, ARGV[7], ARGV[8])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', KEYS[3], '1')
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`);

/** KEYS: v. For clients without a plain GET (node-redis through fromNodeRedis). */
export const PLAIN_GET = new LuaScript(`return redis.call('GET', KEYS[1])`);

/** ARGV: channel, message. A PUBLISH any client can send (node-redis through fromNodeRedis too). */
export const PUBLISH = new LuaScript(`return redis.call('PUBLISH', ARGV[1], ARGV[2])`);
