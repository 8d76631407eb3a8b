//! `/metrics` through the real app: requests counted by route pattern, pools, the queue.

mod common;

use common::TestApp;

#[tokio::test]
async fn explore() {
    let app = TestApp::new().await;
    app.get("/").await;
    app.get("/s/999").await;
    app.get("/s/999/c/1").await;
    app.get("/nowhere/at/all").await;
    app.get("/health").await;
    app.get("/static/nothing.css").await;
    app.get("/login").await;
    app.post_form_raw("/login", &[("login", "x")]).await;
    app.get("/settings").await;
    let m = app.get("/metrics").await.body;
    println!("{m}");
}
