//! Data export: `/settings/export` asks for a ZIP of the account, a worker job builds it,
//! `/exports/{token}` downloads it (being written).

pub mod pages;
