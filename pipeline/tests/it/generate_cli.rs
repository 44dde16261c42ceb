//! `segtune generate` on the command line.

use crate::common::{assert_mentions, listing, run, segtune};

#[test]
fn generate_then_validate_works_as_the_readme_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synthetic");
    let (code, stdout, stderr) = run(segtune()
        .args([
            "generate",
            "--partners",
            "2000",
            "--periods",
            "2",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    // One JSON line on stdout; the next step in the log.
    let written: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(
        written["periods"],
        serde_json::json!(["2025-Q4", "2026-Q1"])
    );
    assert_eq!(written["partners"], 2000);
    assert_eq!(
        written["config"].as_str().map(std::path::PathBuf::from),
        Some(out.join("segtune.toml"))
    );
    assert_mentions(&stderr, &["next: segtune validate --config"]);
    let (code, stdout, stderr) = run(segtune()
        .arg("validate")
        .arg("--config")
        .arg(out.join("segtune.toml")));
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(summary["status"], "valid");
    // 2,000 partners in the first period, 80 join in the second, a few dormant ones leave.
    let partners = summary["partners"].as_u64().expect("a count");
    assert!((2_000..=2_080).contains(&partners), "{partners}");
    assert_eq!(
        summary["numeric_features"].as_array().map(Vec::len),
        Some(12)
    );
}

#[test]
fn generate_refuses_an_existing_folder_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synthetic");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("keep.txt"), "precious").expect("write");
    let (code, _, stderr) = run(segtune()
        .args(["generate", "--partners", "100", "--out"])
        .arg(&out));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["already exists", "--force"]);
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).expect("untouched"),
        "precious"
    );
    let (code, _, stderr) = run(segtune()
        .args(["generate", "--partners", "100", "--force", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert!(!out.join("keep.txt").exists() && out.join("segtune.toml").exists());
}

#[test]
fn generate_with_bad_parameters_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synthetic");
    let (code, _, stderr) = run(segtune()
        .args(["generate", "--partners", "0", "--out"])
        .arg(&out));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["partners must be"]);
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn generate_is_deterministic_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b"] {
        let (code, _, stderr) = run(segtune()
            .args([
                "generate",
                "--partners",
                "1500",
                "--periods",
                "2",
                "--seed",
                "9",
                "--part-rows",
                "700",
                "--out",
            ])
            .arg(dir.path().join(name)));
        assert_eq!(code, 0, "{stderr}");
    }
    let files = |name: &str| {
        let root = dir.path().join(name);
        listing(&root)
            .into_iter()
            .filter(|(p, _)| p.is_file())
            .map(|(p, _)| {
                (
                    p.strip_prefix(&root).expect("under").to_path_buf(),
                    std::fs::read(&p).expect("read"),
                )
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (files("a"), files("b"));
    assert!(a.len() > 10);
    assert!(a == b, "same seed must give the same bytes");
}
