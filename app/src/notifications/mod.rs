//! Notifications: in-app (`/notifications`) and by email, with preferences per kind.

pub mod pages;
