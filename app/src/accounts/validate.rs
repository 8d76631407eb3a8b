//! Form validation for accounts: the same rules as the schema's CHECK constraints, with
//! messages a person can act on.

pub use crate::error::FieldErrors;

pub const PASSWORD_MIN: usize = 10;
/// Hashing is deliberately expensive; refuse novels as passwords.
pub const PASSWORD_MAX: usize = 1024;

/// Usernames are stored lower-case: "Alice" and "alice" are the same name.
pub fn normalize_username(raw: &str) -> String {
    raw.trim().to_lowercase()
}

pub fn username(name: &str, errors: &mut FieldErrors) {
    let len = name.chars().count();
    if len < 3 || len > 30 {
        errors.insert("username", "Choose a username of 3 to 30 characters.".into());
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        errors.insert("username", "Use only letters, digits and underscores.".into());
    } else if RESERVED_USERNAMES.contains(&name) {
        errors.insert("username", "That username is reserved. Try another.".into());
    }
}

/// Names signup never hands out: the system account deleted users' kept stories and
/// comments are attributed to.
pub const RESERVED_USERNAMES: &[&str] = &[super::users::DELETED_USERNAME];

/// The message for a username held back after its account was deleted.
pub const RETIRED_USERNAME: &str =
    "That username belonged to an account deleted less than 30 days ago and cannot be taken yet. Try another.";

/// What happens to a deleted account's stories and comments (the `content` field of
/// `POST /settings/delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionMode {
    /// Stories (with their chapters) and comments are deleted.
    Delete,
    /// Published stories and comments stay, attributed to "deleted user"; drafts go.
    Anonymise,
}

impl DeletionMode {
    /// From the form; an empty field means `Delete`.
    pub fn parse(s: &str) -> Option<DeletionMode> {
        match s.trim() {
            "" | "delete" => Some(DeletionMode::Delete),
            "anonymise" | "anonymize" => Some(DeletionMode::Anonymise),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionMode::Delete => "delete",
            DeletionMode::Anonymise => "anonymise",
        }
    }
}

pub fn email(email: &str, errors: &mut FieldErrors) {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if email.is_empty() {
        errors.insert("email", "Enter your email address.".into());
    } else if !ok {
        errors.insert("email", "Enter a valid email address, like name@example.com.".into());
    }
}

pub fn password(password: &str, errors: &mut FieldErrors) {
    let len = password.chars().count();
    if len < PASSWORD_MIN {
        errors.insert("password", format!("Use at least {PASSWORD_MIN} characters."));
    } else if len > PASSWORD_MAX {
        errors.insert("password", format!("Use at most {PASSWORD_MAX} characters."));
    }
}

/// Only strict local paths are followed after login: `/settings`, `/s/1?x=y`; never
/// `//evil.example`, `https://…`, or anything a browser could turn into one. Browsers
/// drop tabs and newlines from URLs and treat `\` as `/`, so `/\t/evil.example` and
/// `/\\evil.example` are other host names in disguise; percent-encoding (`/%2F%2F…`,
/// `/%09/…`) is checked in every decoded form too. Anything doubtful becomes `/`.
pub fn safe_next(next: &str) -> &str {
    if is_local_path(next) { next } else { "/" }
}

/// Longer `next=` values are not ours (our URLs are short); refusing them keeps the
/// decoding below cheap.
pub const NEXT_MAX: usize = 2048;

fn is_local_path(next: &str) -> bool {
    // As sent, query included: at most `NEXT_MAX` bytes on one line of printable
    // characters with no backslash (the path checks below cover the leading `/`).
    if next.len() > NEXT_MAX || next.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        return false;
    }
    // The path, and each decoding of it, must be a plain local path: three rounds cover
    // anything a chain of proxies and browsers would decode. (The query may hold encoded
    // spaces; it cannot change the host.)
    let mut path = next.split(['?', '#']).next().unwrap_or_default().to_string();
    for _ in 0..3 {
        if !is_plain_local_path(&path) {
            return false;
        }
        let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy().into_owned();
        if decoded == path {
            return true;
        }
        path = decoded;
    }
    is_plain_local_path(&path)
}

/// A single leading `/`, no empty segment (`//`, which a browser may read as the start
/// of a host after normalisation), no `.`/`..` segments, no backslash, whitespace,
/// control character or `:` (no scheme).
fn is_plain_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && !path.chars().any(|c| c == '\\' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn username_error(name: &str) -> Option<String> {
        let mut e = FieldErrors::new();
        username(name, &mut e);
        e.get("username").cloned()
    }

    fn email_error(addr: &str) -> Option<String> {
        let mut e = FieldErrors::new();
        email(addr, &mut e);
        e.get("email").cloned()
    }

    fn password_error(pw: &str) -> Option<String> {
        let mut e = FieldErrors::new();
        password(pw, &mut e);
        e.get("password").cloned()
    }

    #[test]
    fn username_length_boundaries() {
        let length = Some("Choose a username of 3 to 30 characters.".to_string());
        assert_eq!(username_error(""), length);
        assert_eq!(username_error("ab"), length);
        assert_eq!(username_error("abc"), None);
        assert_eq!(username_error(&"a".repeat(30)), None);
        assert_eq!(username_error(&"a".repeat(31)), length);
        // Characters, not bytes: three non-ASCII letters are long enough but not allowed.
        assert_eq!(username_error("ééé"), Some("Use only letters, digits and underscores.".into()));
        assert_eq!(username_error("éé"), length);
    }

    #[test]
    fn username_characters() {
        let charset = Some("Use only letters, digits and underscores.".to_string());
        for ok in ["abc", "a_1", "___", "007", "z9_y8"] {
            assert_eq!(username_error(ok), None, "{ok}");
        }
        for bad in ["Abc", "ab-c", "ab.c", "ab c", "ab\0", "abc!", "ab\u{0}"] {
            assert_eq!(username_error(bad), charset, "{bad}");
        }
        assert_eq!(normalize_username("  Alice_1 "), "alice_1");
        assert_eq!(username_error("deleted_user"), Some("That username is reserved. Try another.".into()));
    }

    #[test]
    fn deletion_modes() {
        assert_eq!(DeletionMode::parse(""), Some(DeletionMode::Delete));
        assert_eq!(DeletionMode::parse("delete"), Some(DeletionMode::Delete));
        assert_eq!(DeletionMode::parse("anonymise"), Some(DeletionMode::Anonymise));
        assert_eq!(DeletionMode::parse("anonymize"), Some(DeletionMode::Anonymise));
        for bad in ["Delete", "keep", "all", "delete;drop"] {
            assert_eq!(DeletionMode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn password_length_boundaries() {
        let short = Some(format!("Use at least {PASSWORD_MIN} characters."));
        let long = Some(format!("Use at most {PASSWORD_MAX} characters."));
        assert_eq!(password_error(""), short);
        assert_eq!(password_error(&"p".repeat(PASSWORD_MIN - 1)), short);
        assert_eq!(password_error(&"p".repeat(PASSWORD_MIN)), None);
        assert_eq!(password_error(&"p".repeat(PASSWORD_MAX)), None);
        assert_eq!(password_error(&"p".repeat(PASSWORD_MAX + 1)), long);
        // Characters, not bytes: ten two-byte characters are enough.
        assert_eq!(password_error(&"é".repeat(PASSWORD_MIN)), None);
        assert_eq!(password_error(&"é".repeat(PASSWORD_MIN - 1)), short);
        assert_eq!(PASSWORD_MIN, 10);
        assert_eq!(PASSWORD_MAX, 1024);
    }

    #[test]
    fn email_rules_one_by_one() {
        let invalid = Some("Enter a valid email address, like name@example.com.".to_string());
        assert_eq!(email_error(""), Some("Enter your email address.".into()));
        assert_eq!(email_error("a@b.co"), None);
        let local = "a".repeat(254 - "@b.co".len());
        assert_eq!(email_error(&format!("{local}@b.co")), None, "254 characters");
        assert_eq!(email_error(&format!("{local}x@b.co")), invalid, "255 characters");
        for bad in ["ab.co", "@b.co", "a@b@c.co", "a@bco", "a@.b.co", "a@b.co.", "a@b..co", "a b@c.co", "a@b.co\n", "a\t@b.co", "a\u{7}@b.co"] {
            assert_eq!(email_error(bad), invalid, "{bad:?}");
        }
    }

    #[test]
    fn usernames() {
        for (name, ok) in [("abc", true), ("ab", false), ("a_1_b", true), ("ünï", false), ("a b", false), (&"x".repeat(31), false)] {
            let mut e = FieldErrors::new();
            username(name, &mut e);
            assert_eq!(e.is_empty(), ok, "{name}");
        }
    }

    #[test]
    fn emails() {
        for (addr, ok) in [("a@b.co", true), ("a@b", false), ("@b.co", false), ("a b@c.de", false), ("a@@b.co", false), ("a@b..co", false)] {
            let mut e = FieldErrors::new();
            email(addr, &mut e);
            assert_eq!(e.is_empty(), ok, "{addr}");
        }
    }

    #[test]
    fn next_is_local_only() {
        for ok in ["/", "/settings", "/s/12/c/3", "/s/1?after=17_3&x=a%20b", "/t/sci-fi#top", "/u/al_ice"] {
            assert_eq!(safe_next(ok), ok, "{ok:?} should be kept");
        }
        let long_ok = format!("/s/1?x={}", "a".repeat(NEXT_MAX - "/s/1?x=".len()));
        assert_eq!(safe_next(&long_ok), long_ok, "{NEXT_MAX} bytes");
        assert_eq!(safe_next(&format!("{long_ok}a")), "/", "{} bytes", NEXT_MAX + 1);
        // The query cannot change the host, but a raw tab, space, backslash or control
        // character has no business in a Location header.
        for evil in ["/s/1?x=\t", "/s/1?x=a b", "/s/1?x=\\", "/s/1?x=\u{1}", "/s/1#a\nb"] {
            assert_eq!(safe_next(evil), "/", "{evil:?} must not be followed");
        }
        for evil in [
            "",
            "settings",
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\t//evil.example",
            "/%09/evil.example",
            "/%09//evil.example",
            "/%5Cevil.example",
            "/%5C%5Cevil.example",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "/%252F%252Fevil.example",
            "/./evil",
            "/.//evil.example",
            "/../evil",
            "/%2E%2E/evil",
            "/a\r\nSet-Cookie:x=1",
            "/%0d%0aSet-Cookie:x=1",
            "/ /evil.example",
            "/\u{0}x",
            "/%00x",
            "/javascript:alert(1)",
            "/http://evil.example",
        ] {
            assert_eq!(safe_next(evil), "/", "{evil:?} must not be followed");
        }
    }
}
