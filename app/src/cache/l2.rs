//! L2: entries in Redis, shared by every process, each validated against tag versions
//! kept in Redis too. One round trip per lookup (a Lua script), one per store, one per
//! invalidation (which also publishes the message every process's L1 hears).
//!
//! Keys, under the deployment's namespace `N` (`Redis::namespace`: one Redis may serve
//! several deployments): `Nc:{kind}:{key}` a hash of the body (`b`) and the tag versions
//! it was built at (`t`, `name=version …`), with the kind's TTL; `Nt:{tag}` a tag's
//! current version; `Nt:_seq` the sequence versions are drawn from. A version is a number drawn from the
//! one sequence, never a per-tag counter, and a tag key is created before any entry
//! records it: so a tag key that expires (a day after its last write, longer than any
//! entry lives) or is evicted under memory pressure reads as a *different* version, and
//! its entries turn stale instead of coming back. Scripts touch keys they derive (tag
//! keys), so this needs one Redis, not a cluster.

use redis::Script;

use super::tags::Tag;
use crate::redis_client::{Redis, Unavailable};

/// The pub/sub channel invalidations are published on (under the namespace).
pub fn channel(redis: &Redis) -> String {
    format!("{}cache", redis.namespace())
}
/// Stores run in the background (no request waits on them) and carry whole pages: a
/// longer deadline than lookups, so a busy moment does not leave L2 empty.
const PUT_DEADLINE: std::time::Duration = std::time::Duration::from_millis(100);

/// The Lua function both lookups share: a tag's current version, drawn from the
/// sequence (and kept a day) when the tag has none yet.
macro_rules! version_fn {
    () => {
        r#"
local function version(ns, name)
  local k = ns .. 't:' .. name
  local v = redis.call('GET', k)
  if not v then
    v = tostring(redis.call('INCR', ns .. 't:_seq'))
    redis.call('SET', k, v, 'EX', 86400)
  end
  return v
end
"#
    };
}

/// Lookup: the current versions of the known tags (created if absent) and the entry's
/// body if every tag it recorded is still at that version. ARGV[1]: the namespace, then
/// the known tags. Returns `[found (0|1), body, its tags, version of ARGV[2], …]`.
const GET: &str = concat!(version_fn!(), r#"
local ns = ARGV[1]
local out = {0, '', ''}
for i = 2, #ARGV do
  out[i + 2] = version(ns, ARGV[i])
end
local e = redis.call('HMGET', KEYS[1], 'b', 't')
if e[1] then
  local ok = true
  if e[2] and e[2] ~= '' then
    for name, ver in string.gmatch(e[2], '(%S+)=(%S+)') do
      if redis.call('GET', ns .. 't:' .. name) ~= ver then ok = false break end
    end
  end
  if ok then out[1] = 1 out[2] = e[1] out[3] = e[2] or '' end
end
return out
"#);

/// The current versions of the tags ARGV[2..] (created if absent); ARGV[1]: the namespace.
const VERSIONS: &str = concat!(version_fn!(), r#"
local ns = ARGV[1]
local out = {}
for i = 2, #ARGV do
  out[i - 1] = version(ns, ARGV[i])
end
return out
"#);

/// Invalidation: a new version for each tag of ARGV[3..], then the message ARGV[2] on
/// channel KEYS[1]; ARGV[1]: the namespace.
const INVALIDATE: &str = r#"
local ns = ARGV[1]
for i = 3, #ARGV do
  redis.call('SET', ns .. 't:' .. ARGV[i], tostring(redis.call('INCR', ns .. 't:_seq')), 'EX', 86400)
end
redis.call('PUBLISH', KEYS[1], ARGV[2])
return #ARGV - 2
"#;

pub struct Scripts {
    get: Script,
    versions: Script,
    invalidate: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts { get: Script::new(GET), versions: Script::new(VERSIONS), invalidate: Script::new(INVALIDATE) }
    }
}

fn entry_key(redis: &Redis, kind: &str, key: &str) -> String {
    format!("{}c:{kind}:{key}", redis.namespace())
}

/// An L2 lookup: the body if current (with every tag it was built from), and the Redis
/// versions of the known tags.
pub struct Lookup {
    pub body: Option<Vec<u8>>,
    pub tags: Vec<Tag>,
    pub versions: Vec<String>,
}

impl Scripts {
    pub async fn get(&self, redis: &Redis, kind: &str, key: &str, tags: &[Tag]) -> Result<Lookup, Unavailable> {
        let mut inv = self.get.prepare_invoke();
        inv.key(entry_key(redis, kind, key)).arg(redis.namespace());
        for t in tags {
            inv.arg(t.as_str());
        }
        let out: Vec<redis::Value> = redis.call(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        let mut it = out.into_iter();
        let found = matches!(it.next(), Some(redis::Value::Int(1)));
        let body = match it.next() {
            Some(redis::Value::BulkString(b)) if found => Some(b),
            _ => None,
        };
        let tags = match it.next() {
            Some(redis::Value::BulkString(t)) => String::from_utf8_lossy(&t)
                .split(' ')
                .filter_map(|pair| pair.split_once('=').and_then(|(name, _)| Tag::parse(name)))
                .collect(),
            _ => Vec::new(),
        };
        let versions = it
            .map(|v| match v {
                redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            })
            .collect();
        Ok(Lookup { body, tags, versions })
    }

    pub async fn versions(&self, redis: &Redis, tags: &[Tag]) -> Result<Vec<String>, Unavailable> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.versions.prepare_invoke();
        inv.arg(redis.namespace());
        for t in tags {
            inv.arg(t.as_str());
        }
        redis.call(|mut c| async move { inv.invoke_async(&mut c).await }).await
    }

    /// Stores `body` built at `versions` (pairs of tag and Redis version) for `ttl_secs`.
    pub async fn put(&self, redis: &Redis, kind: &str, key: &str, versions: &[(Tag, String)], body: Vec<u8>, ttl_secs: u64) -> Result<(), Unavailable> {
        let t = versions.iter().map(|(tag, v)| format!("{tag}={v}")).collect::<Vec<_>>().join(" ");
        let key = entry_key(redis, kind, key);
        let mut pipe = redis::pipe();
        pipe.atomic().hset_multiple(&key, &[("b", body), ("t", t.into_bytes())]).ignore().expire(&key, ttl_secs.max(1) as i64).ignore();
        redis.call_within(PUT_DEADLINE, |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    /// New versions for `tags` and `message` published to every process.
    pub async fn invalidate(&self, redis: &Redis, tags: &[Tag], message: &str) -> Result<(), Unavailable> {
        let mut inv = self.invalidate.prepare_invoke();
        inv.key(channel(redis)).arg(redis.namespace()).arg(message);
        for t in tags {
            inv.arg(t.as_str());
        }
        redis.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await }).await.map(drop)
    }
}
