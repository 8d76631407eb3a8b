//! Who may do what: the one place that answers "may this user do this (to that)".
//!
//! Handlers ask `may(user, action)` (or `require`, which turns a refusal into the right
//! error: a login redirect for visitors, 403 for the logged-in) instead of comparing
//! roles themselves, so a rule changes in one place. Objects come in as plain facts
//! (who owns it, is it hidden) so this module needs no database and no poem.

use std::{fmt, str::FromStr};

use serde::Serialize;

use crate::{error::Error, sessions::CurrentUser};

/// Roles, lowest first: the derived order is the privilege order, as the schema's enum
/// `user_role` orders them (`role >= 'moderator'` in SQL means the same as here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "user_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Moderator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Moderator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    pub fn is_staff(self) -> bool {
        self >= Role::Moderator
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown role {:?} (expected reader, writer, moderator or admin)", self.0)
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Role, UnknownRole> {
        s.parse()
    }
}

/// What someone wants to do. Object facts travel with the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write and publish stories, upload covers (the pages also require a verified address).
    Write,
    /// Like, comment, follow, report: anyone logged in.
    Participate,
    /// See a story or comment hidden by a moderator (its author and staff may).
    SeeHidden { owner_id: i64 },
    /// Delete a comment: its author, the story's author, or a moderator.
    DeleteComment { comment_author_id: i64, story_author_id: i64 },
    /// The moderation queue, hiding and unhiding, dismissing reports.
    Moderate,
    /// Ban or unban `target_role`'s holder: moderators may ban readers and writers,
    /// admins anyone but themselves (the handler checks the self case).
    Ban { target_role: Role },
    /// The admin pages: users, roles, the audit log, the jobs dashboard.
    Administer,
}

/// The answer, with the reason a refusal shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not logged in: log in first.
    LoginRequired,
    /// Logged in, not allowed.
    Deny(&'static str),
}

pub fn may(user: Option<&CurrentUser>, action: Action) -> Decision {
    let Some(user) = user else { return Decision::LoginRequired };
    let role = user.role;
    let allowed = match action {
        Action::Participate => true,
        Action::Write => role >= Role::Writer,
        Action::SeeHidden { owner_id } => user.id == owner_id || role.is_staff(),
        Action::DeleteComment { comment_author_id, story_author_id } => {
            user.id == comment_author_id || user.id == story_author_id || role.is_staff()
        }
        Action::Moderate => role.is_staff(),
        Action::Ban { target_role } => role == Role::Admin || (role == Role::Moderator && target_role < Role::Moderator),
        Action::Administer => role == Role::Admin,
    };
    if allowed {
        return Decision::Allow;
    }
    Decision::Deny(match action {
        Action::Write => "Your account cannot publish stories.",
        Action::Moderate => "Only moderators can do that.",
        Action::Ban { .. } => "You cannot ban this account.",
        Action::Administer => "Only administrators can see this page.",
        _ => "You cannot do that.",
    })
}

/// `may`, as a handler's early return: visitors are sent to log in (and back to `here`),
/// the logged-in get 403 with the reason.
pub fn require(user: Option<&CurrentUser>, action: Action, here: &str) -> Result<(), Error> {
    match may(user, action) {
        Decision::Allow => Ok(()),
        Decision::LoginRequired => Err(Error::LoginRequired(here.to_owned())),
        Decision::Deny(why) => Err(Error::Forbidden(why.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, role: Role) -> CurrentUser {
        CurrentUser {
            id,
            username: format!("u{id}"),
            display_name: String::new(),
            email: String::new(),
            role,
            email_verified: true,
            unread: 0,
        }
    }

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Moderator && Role::Moderator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err(), "exact spelling only");
    }

    #[test]
    fn each_action_needs_its_role() {
        let table = [
            (Action::Participate, Role::Reader),
            (Action::Write, Role::Writer),
            (Action::Moderate, Role::Moderator),
            (Action::Administer, Role::Admin),
        ];
        for (action, lowest) in table {
            for role in Role::ALL {
                let d = may(Some(&user(1, role)), action);
                assert_eq!(d == Decision::Allow, role >= lowest, "{action:?} as {role}");
            }
            assert_eq!(may(None, action), Decision::LoginRequired);
        }
    }

    #[test]
    fn owners_and_staff_see_hidden_things_and_delete_comments() {
        let hidden = Action::SeeHidden { owner_id: 7 };
        assert_eq!(may(Some(&user(7, Role::Reader)), hidden), Decision::Allow);
        assert_ne!(may(Some(&user(8, Role::Writer)), hidden), Decision::Allow);
        assert_eq!(may(Some(&user(8, Role::Moderator)), hidden), Decision::Allow);
        let delete = Action::DeleteComment { comment_author_id: 1, story_author_id: 2 };
        assert_eq!(may(Some(&user(1, Role::Reader)), delete), Decision::Allow);
        assert_eq!(may(Some(&user(2, Role::Reader)), delete), Decision::Allow);
        assert_ne!(may(Some(&user(3, Role::Writer)), delete), Decision::Allow);
        assert_eq!(may(Some(&user(3, Role::Moderator)), delete), Decision::Allow);
    }

    #[test]
    fn moderators_ban_below_them_and_admins_ban_anyone() {
        let m = user(1, Role::Moderator);
        assert_eq!(may(Some(&m), Action::Ban { target_role: Role::Writer }), Decision::Allow);
        assert_ne!(may(Some(&m), Action::Ban { target_role: Role::Moderator }), Decision::Allow);
        assert_ne!(may(Some(&m), Action::Ban { target_role: Role::Admin }), Decision::Allow);
        let a = user(2, Role::Admin);
        assert_eq!(may(Some(&a), Action::Ban { target_role: Role::Moderator }), Decision::Allow);
        assert_ne!(may(Some(&user(3, Role::Writer)), Action::Ban { target_role: Role::Reader }), Decision::Allow);
    }

    #[test]
    fn require_maps_to_login_or_403() {
        assert!(matches!(require(None, Action::Moderate, "/mod/reports"), Err(Error::LoginRequired(p)) if p == "/mod/reports"));
        assert!(matches!(require(Some(&user(1, Role::Writer)), Action::Moderate, "/"), Err(Error::Forbidden(_))));
        assert!(require(Some(&user(1, Role::Admin)), Action::Moderate, "/").is_ok());
    }
}
