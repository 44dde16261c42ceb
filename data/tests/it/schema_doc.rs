//! data/SCHEMA.md and data/src/schema.rs describe the same tables.

use segtune_data::schema::documented;

/// Parses the `| column | type | null |` rows under the heading "### `NAME` (exact)".
fn documented_rows(markdown: &str, name: &str) -> Vec<(String, String, bool)> {
    let heading = format!("### `{name}` (exact)");
    let start = markdown
        .find(&heading)
        .unwrap_or_else(|| panic!("SCHEMA.md has no section {heading}"));
    markdown[start + heading.len()..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2] == "yes")
        })
        .collect()
}

#[test]
fn schema_doc_matches_the_code() {
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SCHEMA.md"))
        .expect("SCHEMA.md exists");
    for (name, schema) in documented() {
        let rows = documented_rows(&markdown, name);
        let fields: Vec<(String, String, bool)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
            .collect();
        assert_eq!(
            rows, fields,
            "SCHEMA.md section `{name}` differs from data/src/schema.rs"
        );
    }
}
