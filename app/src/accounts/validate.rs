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

/// Only local paths are followed after login: `/x`, never `//evil.example` or `https://…`.
pub fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") && !next.contains(['\r', '\n']) {
        next
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(safe_next("/settings"), "/settings");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
    }
}
