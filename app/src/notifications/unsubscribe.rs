//! One-click unsubscribe tokens (the `List-Unsubscribe` link of every notification mail).
//!
//! `{user_id}.{scope}.{signature}`, the signature an HMAC of both under `SECRET_KEY`:
//! anyone holding the link may turn off that one kind of mail for that one user — which
//! is what a mail client's one-click POST (RFC 8058) must be able to do without cookies
//! or a CSRF token — and nobody can make a link for another user or kind. No expiry: an
//! old mail's link keeps working (it can only turn mail off). Rotating `SECRET_KEY`
//! voids every link, as it voids sessions.

use super::Kind;
use crate::tokens;

/// What a link turns off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    One(Kind),
    /// Every kind (the digest's link).
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::One(k) => k.as_str(),
            Scope::All => "all",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        if s == "all" { Some(Scope::All) } else { Kind::parse(s).map(Scope::One) }
    }

    pub fn kind(self) -> Option<Kind> {
        match self {
            Scope::One(k) => Some(k),
            Scope::All => None,
        }
    }
}

fn signature(secret_key: &[u8], user_id: i64, scope: Scope) -> String {
    tokens::hmac(secret_key, format!("unsubscribe|{user_id}|{}", scope.as_str()).as_bytes())
}

pub fn token(secret_key: &[u8], user_id: i64, scope: Scope) -> String {
    format!("{user_id}.{}.{}", scope.as_str(), signature(secret_key, user_id, scope))
}

/// The user and scope a token names, if its signature is ours.
pub fn verify(secret_key: &[u8], token: &str) -> Option<(i64, Scope)> {
    if token.len() > 100 {
        return None;
    }
    let mut parts = token.split('.');
    let (user, scope, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !user.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let user_id: i64 = user.parse().ok().filter(|&id| id > 0)?;
    if user != user_id.to_string() {
        return None;
    }
    let scope = Scope::parse(scope)?;
    tokens::constant_time_eq(sig.as_bytes(), signature(secret_key, user_id, scope).as_bytes()).then_some((user_id, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_and_scope_and_nothing_else() {
        let key = b"secret";
        for scope in [Scope::One(Kind::Chapter), Scope::One(Kind::Like), Scope::All] {
            let t = token(key, 42, scope);
            assert_eq!(verify(key, &t), Some((42, scope)));
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "URL-safe: {t}");
        }
        let t = token(key, 42, Scope::One(Kind::Chapter));
        let sig = t.rsplit('.').next().unwrap();
        // Another user, another kind, another key: refused.
        assert_eq!(verify(key, &format!("43.chapter.{sig}")), None);
        assert_eq!(verify(key, &format!("42.all.{sig}")), None);
        assert_eq!(verify(key, &format!("42.like.{sig}")), None);
        assert_eq!(verify(b"other", &t), None);
        for bad in ["", "42", "42.chapter", "42.chapter.", "x.chapter.abc", "+42.chapter.abc", "0.all.abc", "-1.all.abc", "42.weekly.abc"] {
            assert_eq!(verify(key, bad), None, "{bad:?}");
        }
        assert_eq!(verify(key, &format!("{t}.extra")), None);
        assert_eq!(verify(key, &format!("042.chapter.{sig}")), None, "the signature covers the canonical id");
    }
}
