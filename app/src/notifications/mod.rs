//! Notifications: in-app (`/notifications`) and by email, with preferences per kind.
//!
//! Rows are created by the worker's `notify` job (never in the request path), in
//! set-based SQL: [`db::create`] is one statement for one recipient or 100,000. Whether a
//! notification is also mailed, at once or in the daily digest, is the recipient's
//! choice per kind ([`prefs`]); every mail carries a signed one-click unsubscribe link
//! ([`unsubscribe`]).

pub mod db;
pub mod pages;
pub mod prefs;
pub mod unsubscribe;

use serde::{Deserialize, Serialize};

/// What a notification is about. Stored as text (`notifications_kind_valid` lists the
/// same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Follow,
    Like,
    Comment,
    Reply,
    Chapter,
}

impl Kind {
    /// In the order the settings page lists them.
    pub const ALL: [Kind; 5] = [Kind::Chapter, Kind::Reply, Kind::Comment, Kind::Follow, Kind::Like];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Follow => "follow",
            Kind::Like => "like",
            Kind::Comment => "comment",
            Kind::Reply => "reply",
            Kind::Chapter => "chapter",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How the settings page names it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Follow => "Someone follows you",
            Kind::Like => "Someone likes your story",
            Kind::Comment => "Someone comments on your story",
            Kind::Reply => "Someone replies to your comment",
            Kind::Chapter => "An author you follow publishes a chapter",
        }
    }
}

/// How a kind of notification reaches the inbox. Stored as text (the
/// `notification_prefs_*_valid` CHECKs list the same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// One email per notification, within a minute or so.
    Instant,
    /// Listed in one email a day.
    Daily,
    /// In-app only.
    Off,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Instant, Delivery::Daily, Delivery::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Instant => "instant",
            Delivery::Daily => "daily",
            Delivery::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Delivery> {
        Delivery::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_deliveries_round_trip_and_refuse_anything_else() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for d in Delivery::ALL {
            assert_eq!(Delivery::parse(d.as_str()), Some(d));
        }
        let kinds: std::collections::HashSet<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds.len(), 5, "every kind listed once");
        for bad in ["", "Follow", "all", "follow ", "likes"] {
            assert_eq!(Kind::parse(bad), None, "{bad:?}");
        }
        for bad in ["", "Instant", "weekly", "none"] {
            assert_eq!(Delivery::parse(bad), None, "{bad:?}");
        }
    }
}
