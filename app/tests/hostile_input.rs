//! Text PostgreSQL cannot store (NUL) sent to every route of the app, logged in: in the
//! path (404), the query string (400) and form fields (400), never a 500.

mod common;

use common::TestApp;

const PW: &str = "correct horse battery";

/// The pattern with every parameter filled with `value`.
fn fill(pattern: &str, value: &str) -> String {
    pattern
        .split('/')
        .map(|seg| if seg.starts_with(':') || seg.starts_with('*') { value.to_string() } else { seg.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every field name our forms use, so each handler's parsing meets the NUL.
const FIELDS: &[&str] = &["username", "email", "password", "login", "next", "display_name", "bio", "title", "summary", "tags", "status", "body", "reason", "q"];

/// The POST routes whose handlers read form fields.
const READS_FIELDS: &[&str] =
    &["/signup", "/login", "/password/forgot", "/password/reset/:token", "/settings", "/stories", "/s/:id/edit", "/s/:id/chapters"];

#[test]
fn the_route_list_is_complete() {
    let routes = common::route_table();
    let patterns: Vec<&str> = routes.iter().map(|(p, _, _)| p.as_str()).collect();
    for expected in ["/", "/health", "/login", "/password/reset/:token", "/s/:id/c/:n", "/stories", "/settings", "/dev/mail/:name", "/media/*key", "/m/:public_id/figure"] {
        assert!(patterns.contains(&expected), "{expected} missing from {patterns:?}");
    }
    assert!(routes.len() >= 25, "{patterns:?}");
}

#[tokio::test]
async fn nul_anywhere_in_a_request_is_refused_never_a_500() {
    let app = TestApp::new().await;
    app.signup("tess", "tess@example.com", PW).await.assert_status(303);
    // A story of the user's own, so story routes reach their handlers.
    let r = app.post_form("/stories", &[("title", "Mine"), ("summary", "s"), ("tags", "x")]).await;
    let story = r.location().and_then(|l| l.strip_prefix("/s/")).expect("story created").to_string();

    let mut routes = common::route_table();
    // Last: the routes that end the session (the rest must run logged in).
    routes.sort_by_key(|(p, _, _)| p == "/logout" || p.contains("revoke"));
    let mut failures = Vec::new();
    for (pattern, get, post) in &routes {
        let normal = fill(pattern, "tess").replace("/s/tess", &format!("/s/{story}")).replace("/c/tess", "/c/1");
        let with_nul_path = if pattern.contains(':') || pattern.contains('*') {
            fill(pattern, "a%00b")
        } else if pattern == "/" {
            "/%00".to_string()
        } else {
            format!("{pattern}%00")
        };
        let with_nul_query = format!("{normal}?q=a%00b&next=%00");
        if *get {
            let r = app.get(&with_nul_path).await;
            if r.status != 404 {
                failures.push(format!("GET {with_nul_path}: {}", r.status));
            }
            let r = app.get(&with_nul_query).await;
            if r.status != 400 {
                failures.push(format!("GET {with_nul_query}: {}", r.status));
            }
        }
        if *post {
            let fields: Vec<(&str, &str)> = FIELDS.iter().map(|f| (*f, "a\0b")).collect();
            let r = app.post_form(&with_nul_path, &fields).await;
            if r.status != 404 {
                failures.push(format!("POST {with_nul_path}: {}", r.status));
            }
            let r = app.post_form(&with_nul_query, &[("title", "x")]).await;
            if r.status != 400 {
                failures.push(format!("POST {with_nul_query}: {}", r.status));
            }
            let r = app.post_form(&normal, &fields).await;
            // Handlers that read no field (logout, revoke, resend) are not bothered by it;
            // those that do must refuse it.
            if r.status == 500 || (READS_FIELDS.contains(&pattern.as_str()) && r.status != 400) {
                failures.push(format!("POST {normal} with NUL fields: {}", r.status));
            }
        }
    }
    assert!(failures.is_empty(), "not refused properly:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn nul_in_a_multipart_text_field_is_400() {
    let app = TestApp::new().await;
    app.signup("tess", "tess@example.com", PW).await.assert_status(303);
    let token = app.csrf_token().await;
    let boundary = "b0und4ry";
    for path in ["/settings", "/stories"] {
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\na\0b\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"display_name\"\r\n\r\na\0b\r\n\
             --{boundary}--\r\n"
        );
        let r = app.post_raw(path, &format!("multipart/form-data; boundary={boundary}"), body.into_bytes(), &[]).await;
        r.assert_status(400).assert_contains("NUL");
    }
    assert_eq!(app.count("SELECT count(*) FROM stories").await, 0, "nothing stored");
}
