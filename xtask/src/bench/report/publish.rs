//! docs/performance.md's latest results: the tables of results.md between two marker lines,
//! under a line naming the commit, the command and the machine they came from.
//!
//! The page itself is prose written by hand; only the marked section is the bench's. When the
//! page or its markers are missing the bench says so and leaves the page alone: publishing is a
//! convenience, never a reason for a finished bench to fail.

use std::fs;
use std::path::Path;

use super::Meta;

pub const BEGIN: &str = "<!-- bench-results:begin -->";
pub const END: &str = "<!-- bench-results:end -->";

/// Where the tables start in results.md: what comes before describes the run, which the page
/// says in prose.
const TABLES_FROM: &str = "## Targets";

/// Replaces the marked section of the page at `doc` with the tables of `results_md`; returns
/// the one line that says what happened.
pub fn publish(doc: &Path, meta: &Meta, results_md: &str) -> String {
    let shown = doc.display();
    let text = match fs::read_to_string(doc) {
        Ok(text) => text,
        Err(err) => return format!("{shown} not read ({err}): its results were left as they are"),
    };
    let Some(updated) = splice(&text, &section(meta, results_md)) else {
        return format!(
            "{shown} has no {BEGIN} ... {END} lines: its results were left as they are"
        );
    };
    match fs::write(doc, updated) {
        Ok(()) => format!("rewrote the results in {shown}"),
        Err(err) => format!("{shown} not written ({err}): its results were left as they are"),
    }
}

/// `doc` with the lines between its marker lines replaced by `body`; None when a marker is
/// missing or the end comes before the beginning.
pub fn splice(doc: &str, body: &str) -> Option<String> {
    let begin = line_start(doc, BEGIN)?;
    let inner = begin + BEGIN.len();
    let end = inner + line_start(&doc[inner..], END)?;
    let body = body.trim_end_matches('\n');
    Some(format!("{}\n{body}\n{}", &doc[..inner], &doc[end..]))
}

/// The byte offset of the first line of `text` that is `marker` (spaces around it allowed).
fn line_start(text: &str, marker: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == marker {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// The stamp line and the tables, their headings one level down so that they sit under the
/// page's own section.
fn section(meta: &Meta, results_md: &str) -> String {
    let tables = results_md
        .find(TABLES_FROM)
        .map_or(results_md, |at| &results_md[at..]);
    let tables: Vec<String> = tables
        .lines()
        .map(|line| match line.strip_prefix("## ") {
            Some(heading) => format!("### {heading}"),
            None => line.to_string(),
        })
        .collect();
    format!("{}\n\n{}\n", stamp(meta), tables.join("\n").trim_end())
}

/// "Commit abc1234, `cargo xtask bench ...`, 2 vCPUs (CPU model), Linux 6.18, on <date>."
fn stamp(meta: &Meta) -> String {
    let dirty = if meta.git_dirty {
        " (with uncommitted changes)"
    } else {
        ""
    };
    let cpu = if meta.cpu_model.is_empty() {
        "CPU"
    } else {
        &meta.cpu_model
    };
    format!(
        "Commit {}{dirty}, `cargo xtask {}`, on {} vCPUs ({cpu}), Linux {}, {}.",
        meta.git_commit, meta.command, meta.cpus, meta.kernel, meta.date_utc
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# Performance\n\nProse.\n\n<!-- bench-results:begin -->\nold table\nold line\n<!-- bench-results:end -->\n\n## After\n";

    #[test]
    fn splice_replaces_only_what_lies_between_the_markers() {
        let out = splice(PAGE, "new\n\n").unwrap();
        assert_eq!(
            out,
            "# Performance\n\nProse.\n\n<!-- bench-results:begin -->\nnew\n<!-- bench-results:end -->\n\n## After\n"
        );
        // Twice gives the same page: the markers stay.
        assert_eq!(splice(&out, "new").unwrap(), out);
    }

    #[test]
    fn splice_leaves_a_page_without_both_markers() {
        assert_eq!(splice("# Performance\n", "new"), None);
        assert_eq!(splice(&PAGE.replace(END, "end"), "new"), None);
        // The end before the beginning is not a section.
        let reversed = format!("{END}\nx\n{BEGIN}\n");
        assert_eq!(splice(&reversed, "new"), None);
        // A marker quoted inside a line is not a marker line.
        assert_eq!(splice(&format!("see `{BEGIN}`\n{END}\n"), "new"), None);
    }

    #[test]
    fn section_has_the_stamp_and_the_tables_a_level_down() {
        let meta = Meta {
            git_commit: "abc1234".into(),
            command: "bench --runs 5".into(),
            cpus: 2,
            cpu_model: "AMD EPYC".into(),
            kernel: "6.18.0".into(),
            date_utc: "2026-12-06 20:00 UTC".into(),
            ..Meta::default()
        };
        let md = "# trafficd benchmark\n\nrun details\n\n## What runs\n\n- x\n\n## Targets\n\n| a |\n\n## Accuracy\n\n| b |\n";
        assert_eq!(
            section(&meta, md),
            "Commit abc1234, `cargo xtask bench --runs 5`, on 2 vCPUs (AMD EPYC), Linux 6.18.0, \
             2026-12-06 20:00 UTC.\n\n### Targets\n\n| a |\n\n### Accuracy\n\n| b |\n"
        );
    }

    #[test]
    fn publish_says_so_when_the_page_is_missing() {
        let dir = std::env::temp_dir().join(format!("xtask-publish-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("performance.md");
        let _ = fs::remove_file(&doc);
        assert!(publish(&doc, &Meta::default(), "## Targets\n").contains("not read"));
        fs::write(&doc, "no markers\n").unwrap();
        assert!(publish(&doc, &Meta::default(), "## Targets\n").contains("has no"));
        assert_eq!(fs::read_to_string(&doc).unwrap(), "no markers\n");
        fs::write(&doc, PAGE).unwrap();
        assert!(publish(&doc, &Meta::default(), "## Targets\n| t |\n").starts_with("rewrote"));
        assert!(fs::read_to_string(&doc)
            .unwrap()
            .contains("### Targets\n| t |\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
