-- Listings now read a story's tags from stories.tags_text (one column, no sub-query per
-- row: the home page's tag sub-queries were most of its PostgreSQL time). set_tags
-- writes the names sorted and distinct; rows written before in the order typed are
-- brought in line, so every page lists tags the same way.
UPDATE stories s SET tags_text = coalesce((SELECT string_agg(t.name, ' ' ORDER BY t.name)
  FROM story_tags st JOIN tags t ON t.id = st.tag_id WHERE st.story_id = s.id), '');
