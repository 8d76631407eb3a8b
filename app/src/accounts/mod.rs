//! Accounts: signup, login, logout, email verification, password reset, profile
//! settings and the session list. Handlers (`pages`) stay thin: validation in
//! `validate`, SQL in `users`, hashing in `passwords`, sessions through
//! `sessions::SessionStore`.

pub mod deletion;
pub mod pages;
pub mod passwords;
pub mod users;
pub mod validate;
