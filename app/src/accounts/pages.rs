//! Account pages: signup, login, logout, email verification, password reset, profile
//! settings and the session list.

use minijinja::{Value, context};
use poem::{Response, Route, get, handler, http::StatusCode, post, web::{Path, Query}};
use serde::Deserialize;

use super::{passwords, users, validate};
use crate::{
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
    let Some(profile) = users::find_by_id(ctx.state.db.primary(), user.id).await? else { return Err(Error::NotFound) };
    let avatar = avatar_of(&ctx, &profile).await?;
    ctx.render(
        "accounts/settings.html",
        context! {
            values => context!{ display_name => &profile.display_name, bio => &profile.bio },
            errors => context!{},
            profile => Value::from(minijinja::value::Serde(&profile)),
            avatar => avatar,
        },
    )
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
        let profile = users::find_by_id(ctx.state.db.primary(), user.id).await?.ok_or(Error::NotFound)?;
        let avatar = avatar_of(&ctx, &profile).await?;
        return ctx.render_form(
            status,
            "accounts/settings.html",
            "form",
            context! {
                values => context!{ display_name => display_name, bio => bio },
                errors => errors,
                profile => Value::from(minijinja::value::Serde(&profile)),
                avatar => avatar,
            },
        );
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
    ctx.flash("success", "Your profile is saved.");
    Ok(ctx.redirect("/settings"))
}

#[handler]
async fn sessions_page(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    let list = ctx.state.sessions.list_for_user(user.id).await?;
    ctx.render("accounts/sessions.html", context! { sessions => Value::from(minijinja::value::Serde(&list)), current_session => ctx.session.session_id })
}

#[handler]
async fn revoke_session(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    let user = ctx.require_user()?;
    if !ctx.state.sessions.revoke(user.id, id).await? {
        return Err(Error::NotFound);
    }
    if ctx.session.session_id == Some(id) {
        cookies::expire(ctx.cookies(), COOKIE, ctx.secure_cookies());
        ctx.flash("info", "You ended this session and are now logged out.");
        return Ok(ctx.redirect("/"));
    }
    ctx.flash("success", "The session was ended.");
    Ok(ctx.redirect("/settings/sessions"))
}
