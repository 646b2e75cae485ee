//! `SERVICE_TAGS`: comma-separated, `\,` for a comma inside a tag (fabio
//! route options such as `redirect=301,https://...` need one). Order is
//! kept because fabio-style consumers read the first matching tag.

/// Splits a tag list; surrounding whitespace is trimmed, empty tags dropped.
pub fn split(s: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => tags.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    tags.push(cur);
    tags.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

/// Appends `extra` to `tags`, keeping the first of any duplicate.
pub fn merge(mut tags: Vec<String>, extra: &[String]) -> Vec<String> {
    tags.extend(extra.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()));
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_in_order() {
        assert_eq!(split("b,a,c"), ["b", "a", "c"]);
    }

    #[test]
    fn escaped_comma_stays_in_the_tag() {
        assert_eq!(
            split(r"urlprefix-/old redirect=301\,https://x/,other"),
            ["urlprefix-/old redirect=301,https://x/", "other"]
        );
    }

    #[test]
    fn other_backslashes_are_kept() {
        assert_eq!(split(r"a\b,c\"), [r"a\b", r"c\"]);
    }

    #[test]
    fn whitespace_and_empties_are_dropped() {
        assert_eq!(split(" a , ,b,"), ["a", "b"]);
        assert!(split("").is_empty());
    }

    #[test]
    fn merge_appends_and_dedups() {
        assert_eq!(merge(vec!["a".into(), "b".into()], &["c".into(), "a".into(), " ".into()]), ["a", "b", "c"]);
    }
}
