//! The admin area under `/admin` (admins only, by `policy::Action::Administer`): the
//! overview, users and roles, the audit log and the jobs dashboard. Each page module in
//! `pages/` asks the policy first; `db` holds the admin's cross-area reads.

pub mod db;
pub mod pages;
