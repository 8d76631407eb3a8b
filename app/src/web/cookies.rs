//! Quire's cookies: their names, and the one way they are built (path `/`, HttpOnly,
//! SameSite=Lax, Secure in production).

use chrono::{DateTime, Utc};
use poem::web::cookie::{Cookie, CookieJar, SameSite};

use crate::sessions::ABSOLUTE_DAYS;

pub const COOKIE: &str = "quire_session";
pub const ANON_COOKIE: &str = "quire_anon";
/// Signed; the WAL position of an anonymous visitor's last write (read-your-writes).
pub const LSN_COOKIE: &str = "quire_lsn";
/// Signed, short-lived: this visitor wrote a moment ago, so every web process looks their
/// session up afresh instead of trusting its cache (their own changes show at once).
pub const WROTE_COOKIE: &str = "quire_w";

pub fn cookie(name: &str, value: &str, max_age_days: Option<i64>, secure: bool) -> Cookie {
    let mut c = Cookie::new_with_str(name, value);
    c.set_path("/");
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_secure(secure);
    if let Some(days) = max_age_days {
        c.set_max_age(std::time::Duration::from_secs(days as u64 * 86400));
    }
    c
}

/// Tells the browser to drop a cookie (same path, so the removal actually matches).
pub fn expire(jar: &CookieJar, name: &str, secure: bool) {
    let mut c = cookie(name, "", None, secure);
    c.set_max_age(std::time::Duration::ZERO);
    c.set_expires(DateTime::<Utc>::UNIX_EPOCH);
    jar.add(c);
}

/// Sets the session cookie after login.
pub fn set_session(jar: &CookieJar, token: &str, secure: bool) {
    jar.add(cookie(COOKIE, token, Some(ABSOLUTE_DAYS), secure));
}


/// The anonymous visitor cookie's value if the browser sent it back, signature checked:
/// None on a first visit (the session layer has just added a new one to the jar, which
/// is why this reads the request's own `Cookie` header, not the jar). Reading statistics
/// count a visitor as a unique reader only when it keeps our cookie.
pub fn anon_seed_sent(req: &poem::Request, key: &poem::web::cookie::CookieKey) -> Option<String> {
    let header = req.headers().get_all(poem::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ");
    let sent: CookieJar = header.parse().ok()?;
    let seed = sent.signed_with_key(key).get(ANON_COOKIE)?.value_str().to_string();
    crate::tokens::is_well_formed(&seed).then_some(seed)
}
