//! Data export: `/settings/export` asks for a ZIP of the account, the worker's
//! `build_export` job (`app::jobs::export`, handler in the worker crate) builds it and
//! mails a link, `/exports/{token}` downloads it for 24 hours.
//!
//! The link is a bearer token (256 bits, only its SHA-256 in the database) *and* it only
//! works in its owner's session: the ZIP holds the account's email address and unpublished
//! drafts, and a mailed link travels through mail servers, forwards and browser histories.
//! An anonymous visitor is sent to log in first (and back); anyone else's session gets 404,
//! as for a token that does not exist. An expired link answers 410.

pub mod db;
pub mod pages;

use crate::{jobs::export::SendExportReady, tokens};

/// The download token of an export whose link derives from `link_key`.
pub fn download_token(secret_key: &[u8], link_key: uuid::Uuid) -> String {
    tokens::link_token(secret_key, &SendExportReady::token_seed(link_key))
}

/// `/exports/{token}`, relative.
pub fn download_path(token: &str) -> String {
    format!("/exports/{token}")
}

/// A byte count for people: "812 KB", "3.4 MB".
pub fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1000.0 {
        format!("{bytes} bytes")
    } else if b < 1_000_000.0 {
        format!("{:.0} KB", b / 1000.0)
    } else if b < 1_000_000_000.0 {
        format!("{:.1} MB", b / 1_000_000.0)
    } else {
        format!("{:.2} GB", b / 1_000_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(812_345), "812 KB");
        assert_eq!(human_size(3_400_000), "3.4 MB");
        assert_eq!(human_size(2_500_000_000), "2.50 GB");
    }

    #[test]
    fn the_token_derives_from_the_link_key() {
        let key = uuid::Uuid::new_v4();
        let t = download_token(b"secret", key);
        assert!(tokens::is_well_formed(&t));
        assert_eq!(t, download_token(b"secret", key));
        assert_ne!(t, download_token(b"other", key));
        assert_ne!(t, download_token(b"secret", uuid::Uuid::new_v4()));
    }
}
