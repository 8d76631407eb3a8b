-- URLs name a media row by an unguessable id, never by its sequential one: with `id` in
-- the URL anyone could walk /m/1, /m/2, … and see covers of other people's drafts. The
-- volatile default gives every existing row its own value (the table is rewritten once)
-- and every new row one without the application having to make it.
ALTER TABLE media
    ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid()
        CONSTRAINT media_public_id_key UNIQUE;

-- "Is this media attached to anything, and to what?": the figure's visibility check and
-- the DeleteMedia job's "still referenced?" check look stories and users up by media id.
CREATE INDEX stories_cover_idx ON stories (cover_id) WHERE cover_id IS NOT NULL;
CREATE INDEX users_avatar_idx ON users (avatar_id) WHERE avatar_id IS NOT NULL;
