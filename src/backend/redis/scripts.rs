//! The Lua scripts that make each step on Redis atomic: routing and pushing a message, taking
//! messages off a queue together with their unacknowledged records for `basic.get` and for
//! the priority steps a consumer's holding list does not take (no window in which a consumer
//! that dies loses one), and putting a delivery back exactly once. The hot path (a publish on
//! the default exchange, consumers, acknowledgements) runs plain commands instead (`channel.rs`,
//! `holding.rs`, `settle.rs`): a script costs Redis several times the commands it runs.
//!
//! Keys follow kombu's Redis transport; the names given to the scripts carry the
//! `global_keyprefix` already. carrot's own records (exchange and queue declarations, the list
//! each of its deliveries came from) are in keys kombu does not read, under `_carrot.`.

use std::sync::LazyLock;

use redis::Script;

use crate::error::Error;

/// Words of a topic key (none for ""), and AMQP's matching: `*` one word, `#` zero or more,
/// as an automaton over the key's words (no backtracking).
const ROUTE: &str = r#"
local function words(s)
  local t = {}
  if s == '' then return t end
  for w in string.gmatch(s .. '.', '([^.]*)%.') do t[#t + 1] = w end
  return t
end
local function topic_match(pattern, key)
  local p = words(pattern)
  local k = words(key)
  local n = #p
  local states = {}
  for i = 1, n + 1 do states[i] = false end
  states[1] = true
  local function close(s)
    for i = 1, n do
      if s[i] and p[i] == '#' then s[i + 1] = true end
    end
  end
  close(states)
  for _, w in ipairs(k) do
    local nx = {}
    for i = 1, n + 1 do nx[i] = false end
    for i = 1, n do
      if states[i] then
        if p[i] == '#' then nx[i] = true
        elseif p[i] == '*' or p[i] == w then nx[i + 1] = true end
      end
    end
    close(nx)
    states = nx
  end
  return states[n + 1]
end
-- The queues a message of `ex` with key `rk` goes to, the exchange's type and its declaration
-- (nil for an exchange carrot does not know: kombu keeps types per process, and routes such
-- an exchange as direct).
local function route(exchanges, prefix, sep, ex, rk)
  if ex == '' then return {rk}, 'direct', nil end
  local spec = redis.call('HGET', exchanges, ex)
  local kind = 'direct'
  if spec then kind = cjson.decode(spec)['type'] end
  local members = redis.call('SMEMBERS', prefix .. '_kombu.binding.' .. ex)
  local seen, out = {}, {}
  for _, m in ipairs(members) do
    local a = string.find(m, sep, 1, true)
    local b = a and string.find(m, sep, a + #sep, true)
    if b then
      local key = string.sub(m, 1, a - 1)
      local queue = string.sub(m, b + #sep)
      local ok = kind == 'fanout' or (kind == 'direct' and key == rk)
        or (kind == 'topic' and topic_match(key, rk))
      if ok and not seen[queue] then
        seen[queue] = true
        out[#out + 1] = queue
      end
    end
  end
  return out, kind, spec
end
"#;

/// Publishes: KEYS exchanges, queues; ARGV exchange, routing key, envelope, priority suffix,
/// key prefix, separator, fanout channel, fanout mark (see [`BRIDGE`]). Returns {status, lists pushed, fanout subscribers}:
/// status 404 (no such exchange), 403 (internal), 0.
///
/// The default exchange reaches a queue that carrot declared or that holds messages; a fanout
/// exchange is published on its channel for kombu's subscribers, and pushed on the lists of
/// the queues carrot declared (kombu's fanout queues are not read as lists).
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ROUTE}{}",
        r#"
local ex, rk, payload, suffix, prefix, sep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if ex ~= '' and redis.call('HEXISTS', KEYS[1], ex) == 0 then return {404, 0, 0} end
local queues, kind, spec = route(KEYS[1], prefix, sep, ex, rk)
if spec and cjson.decode(spec)['internal'] then return {403, 0, 0} end
local n = 0
for _, q in ipairs(queues) do
  local push = true
  if ex == '' then
    push = redis.call('HEXISTS', KEYS[2], q) == 1 or redis.call('EXISTS', prefix .. q) == 1
  elseif kind == 'fanout' then
    push = redis.call('HEXISTS', KEYS[2], q) == 1
  end
  if push then
    redis.call('LPUSH', prefix .. q .. suffix, payload)
    n = n + 1
  end
end
local subscribers = 0
if kind == 'fanout' then
  -- Marked first: carrot's bridges of kombu's fanout messages skip this one.
  redis.call('SET', ARGV[8], '1', 'EX', 60)
  subscribers = redis.call('PUBLISH', ARGV[7], payload)
end
return {0, n, subscribers}
"#
    ))
});

/// Bridges a fanout message kombu published (on Pub/Sub only) to the lists of the queues
/// carrot declared and bound to that exchange, once whichever carrot connections received it:
/// the first to set its mark (ARGV[5], for 60 s) pushes it; carrot's own fanout publishes set
/// the mark as they push. KEYS exchanges, queues; ARGV exchange, envelope, key prefix,
/// separator, mark, priority suffix. Returns the queues pushed to, or -1 (marked already).
pub(crate) static BRIDGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ROUTE}{}",
        r#"
if not redis.call('SET', ARGV[5], '1', 'NX', 'EX', 60) then return -1 end
local queues, kind = route(KEYS[1], ARGV[3], ARGV[4], ARGV[1], '')
if kind ~= 'fanout' then return 0 end
local n = 0
for _, q in ipairs(queues) do
  if redis.call('HEXISTS', KEYS[2], q) == 1 then
    redis.call('LPUSH', ARGV[3] .. q .. ARGV[6], ARGV[2])
    n = n + 1
  end
end
return n
"#
    ))
});

/// Takes up to ARGV[2] messages off the lists KEYS[4..] (in priority order), recording each
/// as kombu records a delivery (KEYS[1] `unacked`: tag -> `[envelope, exchange, routing_key]`,
/// KEYS[2] `unacked_index`: tag -> ARGV[1], the time) and, for carrot, the list it came from
/// (KEYS[3]), in one atomic step (no records with ARGV[4] `noack`). An element without a
/// delivery tag gets ARGV[3] and a number.
/// Returns {list index, tag, envelope, ...}.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out, n, made = {}, tonumber(ARGV[2]), 0
for i = 4, #KEYS do
  while n > 0 do
    local m = redis.call('RPOP', KEYS[i])
    if not m then break end
    -- The fields kombu's envelope has after "properties": found as written (no JSON
    -- decoding on the hot path), or decoded when written otherwise.
    local tag, ex, rk
    local props = string.find(m, '"properties": {', 1, true)
    if props then
      tag = string.match(m, '"delivery_tag": "([^"\\]*)"', props)
      local info = string.find(m, '"delivery_info": {', props, true)
      if info then
        ex = string.match(m, '^[^}]-"exchange": "([^"\\]*)"', info)
        rk = string.match(m, '^[^}]-"routing_key": "([^"\\]*)"', info)
      end
    end
    -- As captured, the exchange and key are JSON string contents without escapes.
    local exj, rkj
    if ex and rk then
      exj, rkj = '"' .. ex .. '"', '"' .. rk .. '"'
    end
    if not (tag and ex and rk) then
      local ok, doc = pcall(cjson.decode, m)
      if ok and type(doc) == 'table' and type(doc.properties) == 'table' then
        local p = doc.properties
        tag = p.delivery_tag
        if type(p.delivery_info) == 'table' then
          ex, rk = p.delivery_info.exchange, p.delivery_info.routing_key
        end
      end
    end
    if type(tag) ~= 'string' then
      made = made + 1
      tag = ARGV[3] .. made
    end
    if not exj then
      if type(ex) ~= 'string' then ex = '' end
      if type(rk) ~= 'string' then rk = '' end
      exj, rkj = cjson.encode(ex), cjson.encode(rk)
    end
    if ARGV[4] ~= 'noack' then
      redis.call('HSET', KEYS[1], tag, '[' .. m .. ', ' .. exj .. ', ' .. rkj .. ']')
      redis.call('ZADD', KEYS[2], ARGV[1], tag)
      redis.call('HSET', KEYS[3], tag, KEYS[i])
    end
    out[#out + 1] = tostring(i - 3)
    out[#out + 1] = tag
    out[#out + 1] = m
    n = n - 1
  end
  if n == 0 then break end
end
return out
"#,
    )
});

/// Puts one delivery back, once: if its record (KEYS[1], field ARGV[1]) is still there, it
/// goes, and the envelope ARGV[3] is pushed on KEYS[4] (ARGV[2] `R`: RPUSH, the head of the
/// queue, next out, as RabbitMQ requeues; `L`: LPUSH, the back, as kombu's own reject does).
/// Returns 1, or 0 if someone put it back already. ARGV[4] `unrecorded`: a message taken
/// without a record (no-ack), pushed back whatever the records say.
pub(crate) static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 and ARGV[4] ~= 'unrecorded' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[2] == 'L' then redis.call('LPUSH', KEYS[4], ARGV[3]) else redis.call('RPUSH', KEYS[4], ARGV[3]) end
return 1
"#,
    )
});

/// Restores a delivery whose consumer is gone (its visibility timeout passed), as kombu's
/// `restore_by_tag`: if the record KEYS[1][ARGV[1]] is still ARGV[2], it goes and the marked
/// envelope ARGV[3] is RPUSHed (next out) on the list it came from when carrot recorded it
/// (KEYS[3]), otherwise on the queues its exchange ARGV[4] and key ARGV[5] route to, as kombu
/// routes it. KEYS exchanges (4); ARGV prefix (6), separator (7), priority suffix (8).
pub(crate) static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ROUTE}{}",
        r#"
local tag, record, payload = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', KEYS[1], tag) ~= record then return 0 end
local from = redis.call('HGET', KEYS[3], tag)
redis.call('HDEL', KEYS[1], tag)
redis.call('ZREM', KEYS[2], tag)
redis.call('HDEL', KEYS[3], tag)
if from then
  redis.call('RPUSH', from, payload)
  return 1
end
local queues = route(KEYS[4], ARGV[6], ARGV[7], ARGV[4], ARGV[5])
for _, q in ipairs(queues) do redis.call('RPUSH', ARGV[6] .. q .. ARGV[8], payload) end
return #queues
"#
    ))
});

/// Releases the restore mutex if this process still holds it (KEYS[1] == ARGV[1]).
pub(crate) static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// A refusal a script answered with (`CARROT<code> text`), as carrot's error.
pub(crate) fn refusal(e: &redis::RedisError) -> Option<Error> {
    let code = e.code()?;
    let text = e.detail().unwrap_or_default().to_string();
    match code {
        "CARROT404" => Some(Error::NotFound(text)),
        "CARROT403" => Some(Error::AccessRefused(text)),
        "CARROT405" => Some(Error::ResourceLocked(text)),
        "CARROT406" => Some(Error::PreconditionFailed(text)),
        _ => None,
    }
}
