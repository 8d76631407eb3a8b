//! Reports and moderation: reporting stories, comments and profiles, the moderators'
//! queue, hiding and unhiding, bans (being written).

pub mod pages;
