//! Stories as templates see them: the row plus its cover figure and reading time. Shared
//! by every page that lists stories (this area's, and the social area's reading list and
//! home sections), so a story card looks the same everywhere.

use minijinja::{Value, context};

use super::db::StoryRow;
use crate::media;

const WORDS_PER_MINUTE: i32 = 230;

pub fn reading_minutes(words: i32) -> i32 {
    ((words + WORDS_PER_MINUTE - 1) / WORDS_PER_MINUTE).max(1)
}

/// A story for templates, with its cover figure (the cover row comes joined to the story).
pub fn story_value(story: &StoryRow) -> Value {
    let cover = story.cover.as_ref().map(media::figure_value);
    context! {
        ..Value::from(minijinja::value::Serde(story)),
        ..context! { cover => cover, reading_minutes => reading_minutes(story.word_count) }
    }
}

pub fn story_values(stories: &[StoryRow]) -> Vec<Value> {
    stories.iter().map(story_value).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reading_minutes_round_up_and_are_at_least_one() {
        assert_eq!(super::reading_minutes(0), 1);
        assert_eq!(super::reading_minutes(230), 1);
        assert_eq!(super::reading_minutes(231), 2);
    }
}
