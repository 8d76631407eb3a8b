//! Tags: what a cached value was built from, so a write can invalidate exactly the values
//! it affects without knowing (or scanning) their keys.
//!
//! Each process keeps a version per tag it has seen invalidated (`Versions`); an L1 entry
//! remembers the versions of its tags when its load began and is valid while they are
//! unchanged. Invalidation bumps a version: here at once, elsewhere when the message
//! arrives (`cache::bus`). Redis keeps versions of its own for L2 (`cache::l2`).

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

/// A tag's name: short, no spaces (it travels in space-separated messages).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The story's row, chapters, counts and comments.
    pub fn story(id: i64) -> Tag {
        Tag(format!("s{id}"))
    }

    /// A user as others see them: name, avatar, profile, ban.
    pub fn user(id: i64) -> Tag {
        Tag(format!("u{id}"))
    }

    /// What one reader's own pages show of them: their likes, saves, follows and where
    /// they stopped reading (`social::db::ViewerState`).
    pub fn viewer(id: i64) -> Tag {
        Tag(format!("v{id}"))
    }

    /// Which stories are listed at all (home, tags, profiles, search): a story published,
    /// returned to draft, hidden, shown, deleted or edited.
    pub fn listing() -> Tag {
        Tag("listing".into())
    }

    /// The trending table (recomputed by the worker).
    pub fn trending() -> Tag {
        Tag("trending".into())
    }

    /// A tag from a message; None for anything that is not a tag's shape.
    pub fn parse(s: &str) -> Option<Tag> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-');
        ok.then(|| Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an entry was built from: the process epoch and each tag's version then.
#[derive(Debug, Clone)]
pub struct Snapshot {
    epoch: u64,
    tags: Vec<(Tag, u64)>,
}

impl Snapshot {
    pub fn tags(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter().map(|(t, _)| t)
    }
}

/// This process's tag versions. Only tags ever invalidated are held (a tag absent is at
/// version 0), so the map grows with the writes a process hears of, a few dozen bytes
/// each; `clear` (after a gap in the invalidation feed) starts it over.
#[derive(Default)]
pub struct Versions {
    map: RwLock<HashMap<Tag, u64>>,
    /// Bumped by `clear`: every entry built before is stale.
    epoch: AtomicU64,
    /// Every bump and clear: a load that saw it change did not see its tags' versions
    /// before it read (tags it found while loading), so its value is not kept here.
    changes: AtomicU64,
}

impl Versions {
    pub fn snapshot<'a>(&self, tags: impl IntoIterator<Item = &'a Tag>) -> Snapshot {
        let epoch = self.epoch.load(Relaxed);
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let tags = tags.into_iter().map(|t| (t.clone(), map.get(t).copied().unwrap_or(0))).collect();
        Snapshot { epoch, tags }
    }

    /// Adds `more` to `snapshot` at their versions now (tags found while loading).
    pub fn extend<'a>(&self, snapshot: &mut Snapshot, more: impl IntoIterator<Item = &'a Tag>) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        for t in more {
            if !snapshot.tags.iter().any(|(have, _)| have == t) {
                snapshot.tags.push((t.clone(), map.get(t).copied().unwrap_or(0)));
            }
        }
    }

    /// The entry built at `snapshot` is still current here.
    pub fn is_current(&self, snapshot: &Snapshot) -> bool {
        if snapshot.epoch != self.epoch.load(Relaxed) {
            return false;
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        snapshot.tags.iter().all(|(t, v)| map.get(t).copied().unwrap_or(0) == *v)
    }

    /// Bumps and clears so far (see `changes`).
    pub fn changes(&self) -> u64 {
        self.changes.load(Relaxed)
    }

    pub fn bump<'a>(&self, tags: impl IntoIterator<Item = &'a Tag>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.changes.fetch_add(1, Relaxed);
        for t in tags {
            *map.entry(t.clone()).or_insert(0) += 1;
        }
    }

    /// Everything built so far is stale (a gap in the invalidation feed).
    pub fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Relaxed);
        self.changes.fetch_add(1, Relaxed);
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_current_until_one_of_its_tags_is_bumped() {
        let v = Versions::default();
        let (a, b, c) = (Tag::story(1), Tag::user(2), Tag::listing());
        let snap = v.snapshot([&a, &b]);
        assert!(v.is_current(&snap));
        v.bump([&c]);
        assert!(v.is_current(&snap), "another tag's bump leaves it alone");
        v.bump([&b]);
        assert!(!v.is_current(&snap));
        let again = v.snapshot([&a, &b]);
        assert!(v.is_current(&again));
        v.clear();
        assert!(!v.is_current(&again), "clear makes everything stale");
    }

    #[test]
    fn tags_found_while_loading_count_from_when_they_were_added() {
        let v = Versions::default();
        let mut snap = v.snapshot([&Tag::story(1)]);
        v.extend(&mut snap, [&Tag::user(9), &Tag::story(1)]);
        assert_eq!(snap.tags().count(), 2);
        v.bump([&Tag::user(9)]);
        assert!(!v.is_current(&snap));
    }

    #[test]
    fn only_tag_shaped_names_parse() {
        assert_eq!(Tag::parse("s12"), Some(Tag::story(12)));
        assert!(Tag::parse("").is_none());
        assert!(Tag::parse("a b").is_none());
        assert!(Tag::parse("x\n").is_none());
    }
}
