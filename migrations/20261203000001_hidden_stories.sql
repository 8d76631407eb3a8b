-- Moderation's seam (the moderation issue sets it): a hidden story is, for everyone but
-- its author and moderators, as if it were a draft: out of every listing, search result,
-- feed, sitemap and the trending table. `stories::db::public_story!` is the one
-- predicate that says so in SQL.
ALTER TABLE stories ADD COLUMN hidden_at timestamptz;
