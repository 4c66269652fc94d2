//! Entity ids: 1 to 128 letters, digits and `.` `_` `-` `:` `~`, not starting with a dot,
//! as the schemas' id pattern says (`common.schema.json`), so that ids are safe in URL
//! paths, file names, topics, rows and headers.

/// Whether `id` is a valid id.
#[must_use]
pub fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'~'))
}

/// Whether `name` is a plain SQL identifier: letters, digits and `_`, not first a digit,
/// at most 63 characters.
#[must_use]
pub fn sql_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether `name` is a table, `table` or `schema.table`, of plain SQL identifiers.
#[must_use]
pub fn sql_table(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| sql_identifier(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_schemas_pattern() {
        for good in [
            "edge-1",
            "a",
            "9ecf1a34-846a-4b77-82f6-b9991874065b",
            "urn:x~y.z_1",
        ] {
            assert!(is_valid(good), "{good}");
        }
        let long = "x".repeat(129);
        for bad in ["", ".hidden", "a b", "a/b", "a\\b", "é", long.as_str()] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn the_schemas_pattern_agrees() {
        let common: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/common.schema.json")).unwrap();
        let pattern = common["$defs"]["id"]["pattern"].as_str().unwrap();
        assert_eq!(
            pattern, "^[A-Za-z0-9_:~-][A-Za-z0-9._:~-]*$",
            "update is_valid with it"
        );
    }
}
