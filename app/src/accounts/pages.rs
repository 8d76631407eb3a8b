//! Account pages: signup, login, logout, email verification, password reset, profile
//! settings, the session list with the user's security events, and account deletion.

use minijinja::{Value, context};
use poem::{Response, Route, get, handler, http::StatusCode, post, web::{Path, Query}};
use serde::Deserialize;

use super::{passwords, users, validate};
use crate::{
    audit,
    error::{Error, FieldErrors, Result, ResultExt},
    jobs::{self, mail::{SendPasswordReset, SendVerificationEmail}},
    ratelimit::limits,
    sessions::CurrentUser,
    web::{
        cookies::{self, COOKIE},
        ctx::Ctx,
        form::{self, Form},
    },
};
use users::{NewUser, TokenCheck, TokenPurpose};

pub fn routes(route: Route) -> Route {
    route
        .at("/signup", get(signup_page).post(signup))
        .at("/login", get(login_page).post(login))
        .at("/logout", post(logout))
        .at("/verify-email/resend", post(resend_verification))
        .at("/verify-email/:token", get(verify_email))
        .at("/password/forgot", get(forgot_page).post(forgot))
        .at("/password/reset/:token", get(reset_page).post(reset))
        .at("/settings", get(settings_page).post(settings))
        .at("/settings/sessions", get(sessions_page))
        .at("/settings/sessions/:id/revoke", post(revoke_session))
        .at("/settings/password", post(change_password))
        .at("/settings/email", post(change_email))
        .at("/settings/delete", post(delete_account))
}

// ---- signup ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    pub username: String,
    pub email: String,
    pub password: String,
}

#[handler]
async fn signup_page(ctx: Ctx) -> Result<Response> {
    if ctx.user().is_some() {
        return Ok(ctx.redirect("/"));
    }
    ctx.render("accounts/signup.html", context! { values => context!{}, errors => context!{} })
}

fn signup_invalid(ctx: &Ctx, form: &SignupForm, errors: &FieldErrors) -> Result<Response> {
    ctx.render_form(
        StatusCode::UNPROCESSABLE_ENTITY,
        "accounts/signup.html",
        "form",
        context! { values => context!{ username => &form.username, email => &form.email }, errors => errors },
    )
}

#[handler]
async fn signup(ctx: Ctx, Form(mut form): Form<SignupForm>) -> Result<Response> {
    form.username = validate::normalize_username(&form.username);
    form.email = form.email.trim().to_string();
    let mut errors = FieldErrors::new();
    validate::username(&form.username, &mut errors);
    validate::email(&form.email, &mut errors);
    validate::password(&form.password, &mut errors);
    if !errors.contains_key("username") && users::username_retired(ctx.state.db.primary(), &form.username).await? {
        errors.insert("username", validate::RETIRED_USERNAME.into());
    }
    if !errors.is_empty() {
        return signup_invalid(&ctx, &form, &errors);
    }
    let limiter = &ctx.state.limiter;
    ctx.limit_ip("signup", limits::SIGNUP_PER_IP).await?;
    limiter.hit(&format!("signup:email:{}", form.email.to_lowercase()), limits::SIGNUP_PER_ACCOUNT).await?;

    let hash = passwords::hash(form.password.clone()).await?;
    let db = ctx.state.db.primary();
    // The user row and its verification-mail job commit together or not at all.
    let mut tx = db.begin().await?;
    let new = NewUser { username: &form.username, email: &form.email, password_hash: &hash };
    let inserted = users::insert(&mut tx, &new)
        .await
        .on_constraint("users_username_key", |_| Error::field("username", "That username is taken. Try another."))
        .on_constraint("users_email_key", |_| {
            Error::field("email", "An account with this email already exists. Log in or reset your password.")
        })
        .on_constraint("users_email_format", |_| Error::field("email", "Enter a valid email address, like name@example.com."));
    let user = match inserted {
        Ok(user) => user,
        Err(Error::Invalid(refused)) => {
            errors.extend(refused);
            return signup_invalid(&ctx, &form, &errors);
        }
        Err(e) => return Err(e),
    };
    // Again after the insert, which waited for any deletion that freed the name to
    // commit: that deletion's retirement row is visible now.
    if users::username_retired(&mut *tx, &user.username).await? {
        drop(tx);
        errors.insert("username", validate::RETIRED_USERNAME.into());
        return signup_invalid(&ctx, &form, &errors);
    }
    jobs::enqueue(&mut tx, &SendVerificationEmail::new(user.id), Some(&ctx.request_id)).await?;
    let token = ctx.state.sessions.create(&mut tx, user.id, &ctx.user_agent, &ctx.ip).await?;
    tx.commit().await?;

    cookies::set_session(ctx.cookies(), &token, ctx.secure_cookies());
    tracing::info!(user_id = user.id, "signed up");
    ctx.flash("success", format!("Welcome to Quire, {}! We sent a link to {} to confirm your address.", user.username, user.email));
    Ok(ctx.redirect("/"))
}

// ---- login / logout ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub login: String,
    pub password: String,
    pub next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NextQuery {
    next: String,
}

#[handler]
async fn login_page(ctx: Ctx, Query(q): Query<NextQuery>) -> Result<Response> {
    let next = validate::safe_next(&q.next);
    if ctx.user().is_some() {
        return Ok(ctx.redirect(next));
    }
    ctx.render("accounts/login.html", context! { values => context!{ next => next }, error => Value::UNDEFINED })
}

#[handler]
async fn login(ctx: Ctx, Form(form): Form<LoginForm>) -> Result<Response> {
    let login = form.login.trim();
    let next = validate::safe_next(&form.next);
    let failed = |message: &str| {
        // Contract: wrong credentials answer 200 with the form, not saying which part was wrong.
        ctx.render_form(
            StatusCode::OK,
            "accounts/login.html",
            "form",
            context! { values => context!{ login => login, next => next }, error => message },
        )
    };
    if login.is_empty() || form.password.is_empty() {
        return failed("Enter your username or email and your password.");
    }
    if login.len() > 254 || form.password.chars().count() > validate::PASSWORD_MAX {
        return failed("That login and password do not match an account.");
    }
    // Every attempt counts against the address, before any hashing.
    ctx.limit_ip("login", limits::LOGIN_PER_IP).await?;

    let db = ctx.state.db.primary();
    let found = users::find_for_login(db, login).await?;
    let ip = ctx.ip_bucket();
    let (user_id, hash) = found.map_or((None, None), |(id, hash)| (Some(id), Some(hash)));
    let failures = failure_key(user_id, login, &ip, db).await?;
    // Locked: refused before hashing, so guessing costs the attacker, not our CPU.
    ctx.state.limiter.check(&failures, limits::LOGIN_PER_ACCOUNT).await?;
    let ok = passwords::verify(form.password.clone(), hash).await?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        // Only failures count: the owner logging in often uses up nothing. Over the
        // limit is answered by the next attempt's check, not this one.
        let _ = ctx.state.limiter.hit(&failures, limits::LOGIN_PER_ACCOUNT).await;
        return failed("That login and password do not match an account.");
    };
    // Banned: said only to whoever knows the password (a guesser learns nothing), with
    // the reason and the end, and no session.
    if let Some(ban) = crate::moderation::db::active_ban(db, user_id).await? {
        return ctx.render_status(StatusCode::FORBIDDEN, "accounts/banned.html", context! { ban => Value::from(minijinja::value::Serde(&ban)) });
    }
    // A fresh id at every login: a session id planted before login is worth nothing.
    if let Some(old) = &ctx.session.token {
        ctx.state.sessions.end(old).await?;
    }
    let mut conn = db.acquire().await?;
    users::remember_login_ip(&mut conn, user_id, &ip).await?;
    let token = ctx.state.sessions.create(&mut conn, user_id, &ctx.user_agent, &ctx.ip).await?;
    cookies::set_session(ctx.cookies(), &token, ctx.secure_cookies());
    tracing::info!(user_id, "logged in");
    Ok(ctx.redirect(next))
}

/// The failed-login budget an attempt draws on. Failures count per account (the user id,
/// so its username and its email share one budget); a login that matches no account gets
/// one per typed value, lower-cased, so a lock-out looks the same either way and does not
/// tell whether an account exists. An address the account has logged in from before has
/// a budget of its own: failures from elsewhere lock everyone else out, not the owner.
async fn failure_key(user_id: Option<i64>, typed: &str, ip: &str, db: &sqlx::PgPool) -> Result<String> {
    Ok(match user_id {
        Some(id) if users::is_known_login_ip(db, id, ip).await? => format!("login:fail:{id}:{ip}"),
        Some(id) => format!("login:fail:{id}"),
        None => format!("login:fail:name:{}", typed.to_lowercase()),
    })
}

#[handler]
async fn logout(ctx: Ctx) -> Result<Response> {
    if let Some(token) = &ctx.session.token {
        ctx.state.sessions.end(token).await?;
    }
    cookies::expire(ctx.cookies(), COOKIE, ctx.secure_cookies());
    ctx.flash("info", "You are logged out.");
    Ok(ctx.redirect("/"))
}

// ---- email verification ------------------------------------------------------------

#[handler]
async fn verify_email(ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    let mut tx = ctx.state.db.primary().begin().await?;
    match users::consume_token(&mut tx, &token, TokenPurpose::VerifyEmail).await? {
        TokenCheck::Valid { user_id } => {
            users::mark_verified(&mut tx, user_id).await?;
            users::void_tokens(&mut tx, user_id, TokenPurpose::VerifyEmail).await?;
            tx.commit().await?;
            // A GET that wrote: the next pages must show the address as verified.
            crate::db::ReadScope::note_write();
            tracing::info!(user_id, "email verified");
            // The session was loaded before the update: show this page as verified already
            // (no "please confirm" banner on the page that confirms it).
            let me = ctx.user().filter(|u| u.id == user_id).map(|u| CurrentUser { email_verified: true, ..u.clone() });
            let extra = match me {
                Some(u) => context! { current_user => Value::from(minijinja::value::Serde(&u)) },
                None => context! {},
            };
            ctx.render("accounts/verified.html", extra)
        }
        TokenCheck::Invalid => ctx.render_status(
            StatusCode::BAD_REQUEST,
            "accounts/link_invalid.html",
            context! { kind => "verify" },
        ),
    }
}

#[handler]
async fn resend_verification(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    if user.email_verified {
        ctx.flash("info", "Your email address is already confirmed.");
        return Ok(ctx.redirect("/settings"));
    }
    ctx.state.limiter.hit(&format!("resend:{}", user.id), limits::RESEND_PER_ACCOUNT).await?;
    let mut conn = ctx.state.db.primary().acquire().await?;
    jobs::enqueue(&mut conn, &SendVerificationEmail::new(user.id), Some(&ctx.request_id)).await?;
    ctx.flash("success", format!("We sent a new confirmation link to {}.", user.email));
    Ok(ctx.redirect("/settings"))
}

// ---- password reset ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ForgotForm {
    email: String,
}

#[handler]
async fn forgot_page(ctx: Ctx) -> Result<Response> {
    ctx.render("accounts/forgot.html", context! { sent => false, errors => context!{} })
}

#[handler]
async fn forgot(ctx: Ctx, Form(form): Form<ForgotForm>) -> Result<Response> {
    let email = form.email.trim();
    let mut errors = FieldErrors::new();
    validate::email(email, &mut errors);
    if !errors.is_empty() {
        return ctx.render_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            "accounts/forgot.html",
            "form",
            context! { sent => false, errors => errors, values => context!{ email => email } },
        );
    }
    let limiter = &ctx.state.limiter;
    ctx.limit_ip("forgot", limits::FORGOT_PER_IP).await?;
    limiter.hit(&format!("forgot:email:{}", email.to_lowercase()), limits::FORGOT_PER_ACCOUNT).await?;
    let db = ctx.state.db.primary();
    if let Some(user) = users::find_by_email(db, email).await? {
        let mut conn = db.acquire().await?;
        jobs::enqueue(&mut conn, &SendPasswordReset::new(user.id), Some(&ctx.request_id)).await?;
        tracing::info!(user_id = user.id, "password reset requested");
    }
    // The same page whether or not the account exists.
    ctx.render_form(StatusCode::OK, "accounts/forgot.html", "form", context! { sent => true, email => email })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResetForm {
    password: String,
}

#[handler]
async fn reset_page(ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    match users::peek_token(ctx.state.db.primary(), &token, TokenPurpose::ResetPassword).await? {
        TokenCheck::Valid { .. } => ctx.render("accounts/reset.html", context! { token => token, errors => context!{} }),
        TokenCheck::Invalid => {
            ctx.render_status(StatusCode::BAD_REQUEST, "accounts/link_invalid.html", context! { kind => "reset" })
        }
    }
}

fn reset_link_invalid(ctx: &Ctx) -> Result<Response> {
    ctx.render_status(StatusCode::BAD_REQUEST, "accounts/link_invalid.html", context! { kind => "reset" })
}

#[handler]
async fn reset(ctx: Ctx, Path(token): Path<String>, Form(form): Form<ResetForm>) -> Result<Response> {
    let mut errors = FieldErrors::new();
    validate::password(&form.password, &mut errors);
    if !errors.is_empty() {
        return ctx.render_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            "accounts/reset.html",
            "form",
            context! { token => token, errors => errors },
        );
    }
    // Hashing is the expensive part: count the attempt and check the link first, so a
    // made-up token costs one cheap lookup and never a hash.
    ctx.limit_ip("reset", limits::RESET_PER_IP).await?;
    let db = ctx.state.db.primary();
    if users::peek_token(db, &token, TokenPurpose::ResetPassword).await? == TokenCheck::Invalid {
        return reset_link_invalid(&ctx);
    }
    let hash = passwords::hash(form.password).await?;
    let mut tx = db.begin().await?;
    // Spent in the transaction that uses it: of two concurrent submissions only one wins.
    let TokenCheck::Valid { user_id } = users::consume_token(&mut tx, &token, TokenPurpose::ResetPassword).await? else {
        drop(tx);
        return reset_link_invalid(&ctx);
    };
    users::set_password(&mut tx, user_id, &hash).await?;
    users::void_tokens(&mut tx, user_id, TokenPurpose::ResetPassword).await?;
    users::forget_login_ips(&mut tx, user_id).await?;
    // Whoever holds the link acts as the account's owner.
    let username = users::find_by_id(&mut *tx, user_id).await?.map(|u| u.username).unwrap_or_default();
    let origin = audit::Origin { actor_id: Some(user_id), actor_name: username, ..ctx.origin() };
    let entry = audit::Entry::new(&origin, audit::actions::PASSWORD_CHANGED, "user", user_id)
        .subject(user_id)
        .after(serde_json::json!({ "via": "reset_link", "sessions_ended": "all" }));
    audit::record(&mut tx, entry).await?;
    // Whoever had the old password is logged out everywhere.
    let ended = ctx.state.sessions.end_all_for_user(tx, user_id).await?;
    tracing::info!(user_id, sessions_ended = ended, "password reset");
    cookies::expire(ctx.cookies(), COOKIE, ctx.secure_cookies());
    ctx.flash("success", "Your password has been changed. Log in with your new password.");
    Ok(ctx.redirect("/login"))
}

// ---- settings ----------------------------------------------------------------------

#[handler]
async fn settings_page(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    render_settings(&ctx, user.id, StatusCode::OK, None, context! {}).await
}

/// The settings page (all its forms) for `user_id`, `extra` overriding a form's values
/// and errors; with `block`, only that form when htmx asked.
async fn render_settings(ctx: &Ctx, user_id: i64, status: StatusCode, block: Option<&str>, extra: Value) -> Result<Response> {
    let Some(profile) = users::find_by_id(ctx.state.db.primary(), user_id).await? else { return Err(Error::NotFound) };
    let avatar = avatar_of(ctx, &profile).await?;
    let page = context! {
        ..extra,
        ..context! {
            values => context!{ display_name => &profile.display_name, bio => &profile.bio },
            errors => context!{},
            password_errors => context!{},
            email_values => context!{ email => &profile.email },
            email_errors => context!{},
            delete_values => context!{},
            delete_errors => context!{},
            profile => Value::from(minijinja::value::Serde(&profile)),
            avatar => avatar,
        }
    };
    match block {
        Some(block) => ctx.render_form(status, "accounts/settings.html", block, page),
        None => ctx.render_status(status, "accounts/settings.html", page),
    }
}

// ---- password and email changes ----------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    password: String,
}

/// Counts a sensitive settings change against the account and checks `password` is the
/// current one: None when it is, else the field error to show.
async fn confirm_password(ctx: &Ctx, user_id: i64, password: String, key: &str, limit: crate::ratelimit::Limit) -> Result<Option<(StatusCode, String)>> {
    if password.is_empty() || password.chars().count() > validate::PASSWORD_MAX {
        return Ok(Some((StatusCode::UNPROCESSABLE_ENTITY, "Enter your current password to confirm.".into())));
    }
    // Every attempt counts, before any hashing: a stolen session cannot guess its way on.
    if let Some(retry) = ctx.state.limiter.over_limit(&format!("{key}:{user_id}"), limit).await? {
        return Ok(Some((StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts. Try again in {}.", crate::media::minutes(retry)))));
    }
    let hash = users::password_hash(ctx.state.db.primary(), user_id).await?;
    if !passwords::verify(password, hash).await? {
        return Ok(Some((StatusCode::UNPROCESSABLE_ENTITY, "That is not your current password.".into())));
    }
    Ok(None)
}

/// `POST /settings/password`: `current_password` and the new `password`. The other
/// sessions end (this device stays logged in); one audit row.
#[handler]
async fn change_password(ctx: Ctx, Form(form): Form<PasswordForm>) -> Result<Response> {
    let user = ctx.require_user()?.clone();
    let mut errors = FieldErrors::new();
    validate::password(&form.password, &mut errors);
    if errors.is_empty() && form.password == form.current_password {
        errors.insert("password", "Choose a password different from your current one.".into());
    }
    if errors.is_empty()
        && let Some((status, message)) =
            confirm_password(&ctx, user.id, form.current_password, "password_change", limits::ACCOUNT_CHANGES_PER_ACCOUNT).await?
    {
        errors.insert("current_password", message);
        let extra = context! { password_errors => errors };
        return render_settings(&ctx, user.id, status, Some("password_form"), extra).await;
    }
    if !errors.is_empty() {
        let extra = context! { password_errors => errors };
        return render_settings(&ctx, user.id, StatusCode::UNPROCESSABLE_ENTITY, Some("password_form"), extra).await;
    }
    let hash = passwords::hash(form.password).await?;
    let mut tx = ctx.state.db.primary().begin().await?;
    users::set_password(&mut tx, user.id, &hash).await?;
    users::void_tokens(&mut tx, user.id, TokenPurpose::ResetPassword).await?;
    let origin = ctx.origin();
    let entry = audit::Entry::new(&origin, audit::actions::PASSWORD_CHANGED, "user", user.id)
        .subject(user.id)
        .after(serde_json::json!({ "via": "settings", "sessions_ended": "others" }));
    audit::record(&mut tx, entry).await?;
    let ended = ctx.state.sessions.end_others_for_user(tx, user.id, ctx.session.session_id).await?;
    crate::db::ReadScope::note_write();
    tracing::info!(user_id = user.id, sessions_ended = ended, "password changed");
    ctx.flash("success", match ended {
        0 => "Your password has been changed.".to_string(),
        1 => "Your password has been changed, and your other session was logged out.".to_string(),
        n => format!("Your password has been changed, and your {n} other sessions were logged out."),
    });
    Ok(ctx.redirect("/settings"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EmailForm {
    email: String,
    password: String,
}

/// `POST /settings/email`: the new `email` and the current `password`. The address is
/// unconfirmed until the link sent to it is followed; one audit row.
#[handler]
async fn change_email(ctx: Ctx, Form(form): Form<EmailForm>) -> Result<Response> {
    let user = ctx.require_user()?.clone();
    let email = form.email.trim().to_string();
    let refused = |status: StatusCode, errors: FieldErrors| {
        let extra = context! { email_values => context!{ email => &email }, email_errors => errors };
        render_settings(&ctx, user.id, status, Some("email_form"), extra)
    };
    let mut errors = FieldErrors::new();
    validate::email(&email, &mut errors);
    if errors.is_empty() && email.eq_ignore_ascii_case(&user.email) {
        errors.insert("email", "That is already your email address.".into());
    }
    if !errors.is_empty() {
        return refused(StatusCode::UNPROCESSABLE_ENTITY, errors).await;
    }
    if let Some((status, message)) = confirm_password(&ctx, user.id, form.password, "email_change", limits::ACCOUNT_CHANGES_PER_ACCOUNT).await? {
        return refused(status, FieldErrors::from([("email_password", message)])).await;
    }
    let mut tx = ctx.state.db.primary().begin().await?;
    let changed = users::set_email(&mut tx, user.id, &email).await.on_constraint("users_email_key", |_| {
        Error::field("email", "Another account already uses this address.")
    }).on_constraint("users_email_format", |_| Error::field("email", "Enter a valid email address, like name@example.com."));
    let old = match changed {
        Ok(Some(old)) => old,
        Ok(None) => return Err(Error::NotFound),
        Err(Error::Invalid(refusal)) => {
            drop(tx);
            return refused(StatusCode::UNPROCESSABLE_ENTITY, refusal).await;
        }
        Err(e) => return Err(e),
    };
    let origin = ctx.origin();
    let entry = audit::Entry::new(&origin, audit::actions::EMAIL_CHANGED, "user", user.id)
        .subject(user.id)
        .before(serde_json::json!({ "email": old }))
        .after(serde_json::json!({ "email": &email }));
    audit::record(&mut tx, entry).await?;
    jobs::enqueue(&mut tx, &SendVerificationEmail::new(user.id), Some(&ctx.request_id)).await?;
    tx.commit().await?;
    crate::db::ReadScope::note_write();
    tracing::info!(user_id = user.id, "email changed");
    ctx.flash("success", format!("Your email address is now {email}. We sent a link there to confirm it."));
    Ok(ctx.redirect("/settings"))
}

async fn avatar_of(ctx: &Ctx, profile: &users::User) -> Result<Option<Value>> {
    Ok(match profile.avatar_id {
        Some(id) => crate::media::db::find(ctx.state.db.primary(), id).await?.map(|m| crate::media::figure_value(&m)),
        None => None,
    })
}

/// Profile form: `display_name`, `bio`, and optionally an `avatar` image (multipart).
#[handler]
async fn settings(ctx: Ctx, req: &poem::Request, body: poem::Body) -> Result<Response> {
    let user = ctx.require_user()?;
    let (fields, avatar) = form::fields_and_image(req, body, "avatar").await?;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut errors = FieldErrors::new();
    let avatar = match avatar {
        // Only confirmed addresses upload; the whole form is refused, nothing written.
        form::ImageField::Some(_) if !user.email_verified => {
            let refusal = crate::media::UploadRefusal::unverified();
            status = StatusCode::FORBIDDEN;
            errors.insert("avatar", refusal.message);
            None
        }
        form::ImageField::Some(upload) => Some(upload),
        form::ImageField::None => None,
        form::ImageField::Rejected { status: s, message } => {
            status = s;
            errors.insert("avatar", message);
            None
        }
    };
    let display_name = fields.get("display_name").map(|s| s.trim()).unwrap_or_default();
    let bio = fields.get("bio").map(|s| s.trim()).unwrap_or_default();
    if display_name.chars().count() > 60 {
        errors.insert("display_name", "Keep your display name to 60 characters.".into());
    }
    if bio.chars().count() > 2000 {
        errors.insert("bio", "Keep your bio to 2000 characters.".into());
    }
    // Counted only once the form would be saved.
    let avatar = match avatar {
        Some(upload) if errors.is_empty() => match crate::media::count_upload(&ctx.state.limiter, user.id).await? {
            None => Some(upload),
            Some(refusal) => {
                status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
                errors.insert("avatar", refusal.message);
                None
            }
        },
        other => other,
    };
    if !errors.is_empty() {
        let extra = context! { values => context!{ display_name => display_name, bio => bio }, errors => errors };
        return render_settings(&ctx, user.id, status, Some("form"), extra).await;
    }
    // The profile change, the avatar's media row, its processing job and the deletion of
    // the avatar it replaces: one transaction.
    let mut tx = ctx.state.db.primary().begin().await?;
    let avatar_id = crate::media::db::replace_optional(
        &mut tx,
        &ctx.state.storage,
        user.id,
        crate::media::Slot::Avatar { user_id: user.id },
        avatar.as_ref(),
        Some(&ctx.request_id),
    )
    .await?;
    users::update_profile(&mut *tx, user.id, display_name, bio, avatar_id).await?;
    tx.commit().await?;
    // Every page that shows them: their profile, their stories' cards and pages, their
    // comments.
    ctx.invalidate(&[crate::cache::Tag::user(user.id)]).await;
    ctx.flash("success", "Your profile is saved.");
    Ok(ctx.redirect("/settings"))
}

/// How many security events /settings/sessions lists.
const SECURITY_EVENTS_SHOWN: i64 = 50;

#[handler]
async fn sessions_page(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    let list = ctx.state.sessions.list_for_user(user.id).await?;
    let events = audit::db::security_events(ctx.state.db.primary(), user.id, SECURITY_EVENTS_SHOWN).await?;
    let events: Vec<Value> = events.iter().map(|e| security_event(user.id, e)).collect();
    ctx.render(
        "accounts/sessions.html",
        context! { sessions => Value::from(minijinja::value::Serde(&list)), current_session => ctx.session.session_id, events => events },
    )
}

/// One row of the user's security events: when, what, and from where. The address and
/// device are shown only for what the user did themself: a moderator's or admin's IP is
/// not theirs to see.
fn security_event(user_id: i64, e: &audit::db::Row) -> Value {
    let after = |key: &str| e.after.as_ref().and_then(|a| a.get(key)).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let what = match e.action.as_str() {
        audit::actions::PASSWORD_CHANGED if after("via") == "reset_link" => "Password reset with an emailed link".to_string(),
        audit::actions::PASSWORD_CHANGED => "Password changed".to_string(),
        audit::actions::EMAIL_CHANGED => "Email address changed".to_string(),
        audit::actions::SESSION_REVOKED => match after("ended_device") {
            d if d.is_empty() => "A session was ended".to_string(),
            d => format!("A session was ended ({d})"),
        },
        audit::actions::EXPORT_REQUESTED => "A copy of your data was requested".to_string(),
        audit::actions::ROLE_CHANGED => match after("role") {
            r if r.is_empty() => "Your role was changed".to_string(),
            r => format!("Your role was changed to {r}"),
        },
        audit::actions::BANNED => "Your account was suspended".to_string(),
        audit::actions::UNBANNED => "Your suspension was lifted".to_string(),
        other => other.to_string(),
    };
    let own = e.actor_id == Some(user_id);
    context! {
        at => e.at.to_rfc3339(),
        what => what,
        ip => if own { e.ip.as_str() } else { "" },
        device => if own { e.user_agent.clone() } else { "Quire staff".to_string() },
    }
}

#[handler]
async fn revoke_session(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    let user = ctx.require_user()?;
    let mut tx = ctx.state.db.primary().begin().await?;
    let Some(ended) = ctx.state.sessions.revoke_on(&mut tx, user.id, id).await? else {
        drop(tx);
        return Err(Error::NotFound);
    };
    let origin = ctx.origin();
    let entry = audit::Entry::new(&origin, audit::actions::SESSION_REVOKED, "session", id)
        .subject(user.id)
        .before(serde_json::json!({ "ip": ended.ip, "user_agent": ended.user_agent, "created_at": ended.created_at }))
        .after(serde_json::json!({ "ended_device": ended.user_agent, "this_device": ctx.session.session_id == Some(id) }));
    audit::record(&mut tx, entry).await?;
    ctx.state.sessions.commit_ended(tx, user.id).await?;
    if ctx.session.session_id == Some(id) {
        cookies::expire(ctx.cookies(), COOKIE, ctx.secure_cookies());
        ctx.flash("info", "You ended this session and are now logged out.");
        return Ok(ctx.redirect("/"));
    }
    ctx.flash("success", "The session was ended.");
    Ok(ctx.redirect("/settings/sessions"))
}

// ---- account deletion --------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteForm {
    password: String,
    /// `delete` (the default) or `anonymise`: what happens to stories and comments.
    content: String,
}

/// The settings page again with the deletion form's errors (nothing was deleted).
async fn delete_refused(ctx: &Ctx, user_id: i64, content: &str, status: StatusCode, errors: FieldErrors) -> Result<Response> {
    let extra = context! { delete_values => context!{ content => content }, delete_errors => errors };
    render_settings(ctx, user_id, status, Some("delete_form"), extra).await
}

/// `POST /settings/delete`: `password` (the current one) and `content`. Everything goes
/// in one transaction (`deletion::delete_account`), which ending the sessions commits.
#[handler]
async fn delete_account(ctx: Ctx, Form(form): Form<DeleteForm>) -> Result<Response> {
    let user = ctx.require_user()?.clone();
    let Some(mode) = validate::DeletionMode::parse(&form.content) else {
        let errors = FieldErrors::from([("content", "Choose whether to delete your stories and comments or keep them anonymously.".to_string())]);
        return delete_refused(&ctx, user.id, "", StatusCode::UNPROCESSABLE_ENTITY, errors).await;
    };
    if let Some((status, message)) = confirm_password(&ctx, user.id, form.password, "delete", limits::DELETE_PER_ACCOUNT).await? {
        return delete_refused(&ctx, user.id, mode.as_str(), status, FieldErrors::from([("password", message)])).await;
    }
    let mut tx = ctx.state.db.primary().begin().await?;
    let outcome = super::deletion::delete_account(&mut tx, &ctx.origin(), user.id, mode, Some(&ctx.request_id)).await?;
    // Commits the deletion; then no process's cache of this one serves the sessions.
    let ended = ctx.state.sessions.end_all_for_user(tx, user.id).await?;
    ctx.invalidate(&[crate::cache::Tag::user(user.id), crate::cache::Tag::listing()]).await;
    crate::db::ReadScope::note_write();
    tracing::info!(user_id = user.id, mode = mode.as_str(), sessions_ended = ended, stories = outcome.stories_deleted + outcome.stories_anonymised,
        media = outcome.media_queued_for_deletion, "account deleted");
    cookies::expire(ctx.cookies(), COOKIE, ctx.secure_cookies());
    ctx.flash("success", match mode {
        validate::DeletionMode::Delete => "Your account and everything in it have been deleted. Goodbye, and thank you for being part of Quire.",
        validate::DeletionMode::Anonymise => {
            "Your account has been deleted. Your published stories and comments stay, shown as by “deleted user”. Goodbye, and thank you."
        }
    });
    Ok(ctx.redirect("/"))
}
