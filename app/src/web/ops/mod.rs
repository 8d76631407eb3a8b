//! Pages for operators, outside the product: `/health`, `/metrics`, and `/dev/mail` in
//! development.

pub mod dev_mail;
pub mod health;
pub mod metrics;
