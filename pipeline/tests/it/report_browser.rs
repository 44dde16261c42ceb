//! The report as channel ops see it: the demo's `report.html` opened in
//! headless Chromium (Debian's `chromium`, or the one `SEGTUNE_CHROMIUM`
//! names) renders without console errors, a screenshot is written, and the
//! rendered page has each segment's card, the forest plot, the warnings and
//! the weight changes; an approver and an override note with HTML in them
//! show as text. Without a Chromium, the check fails under CI and is skipped
//! (with a note) elsewhere. Also: the report's size does not grow with the
//! partners.
//!
//! The screenshot and the rendered DOM are kept under the target folder
//! (`report_browser/` in `CARGO_TARGET_TMPDIR`) for a look after a failure.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{generate_into, run, segtune, segtune_run};

/// The longest a Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium to drive: `SEGTUNE_CHROMIUM`, else Debian's
/// `/usr/bin/chromium`. Without either, a CI run fails (the check must not
/// pass by not running) and a local run is skipped with a note.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEGTUNE_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "SEGTUNE_CHROMIUM = {} does not exist",
            path.display()
        );
        return Some(path);
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return Some(debian.to_path_buf());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Chromium under CI: install Debian's chromium (scripts/test.sh does) or set SEGTUNE_CHROMIUM"
    );
    eprintln!(
        "note: browser check skipped: no Chromium (install chromium or set SEGTUNE_CHROMIUM)"
    );
    None
}

/// What one headless Chromium run gave.
struct Browser {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Opens `page` in headless Chromium with a fresh profile, the flags that
/// stop background networking, and the page's console logged to stderr;
/// `args` says what to do (`--screenshot=...`, `--dump-dom`).
fn headless(chromium: &Path, page: &Path, args: &[String]) -> Browser {
    let profile = tempfile::tempdir().expect("profile folder");
    let page = page.canonicalize().expect("page exists");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("chromium runs") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Browser {
        success: status.is_some_and(|s| s.success()),
        stdout: stdout.join().expect("stdout read"),
        stderr: stderr.join().expect("stderr read"),
    }
}

/// The page's console messages and uncaught errors in Chromium's log: with
/// `--enable-logging=stderr` each console message, whatever its level, is a
/// line with `CONSOLE` in it, and an uncaught exception reads `Uncaught`.
/// The report has no script, so any one is a failure.
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .collect()
}

/// A folder under the target folder that outlives the test, for the
/// screenshot and the DOM.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_browser");
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    dir
}

/// The segment ids of a run, from its weights.json.
fn segment_ids(run_dir: &Path) -> Vec<u64> {
    let weights: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("weights.json")).expect("weights.json"),
    )
    .expect("JSON");
    let mut ids: Vec<u64> = weights
        .as_array()
        .expect("a list of rows")
        .iter()
        .map(|row| row["segment_id"].as_u64().expect("segment_id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The text from `start` up to the end of the element `start` opens.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let rest = &dom[from..];
    &rest[..rest.find(end).map_or(rest.len(), |to| to + end.len())]
}

/// A segment name given at approval: HTML in it must show as text.
const OVERRIDE_NAME: &str = "<img src=x onerror=alert(1)><b>Stars</b>";

#[test]
fn the_demo_report_renders_in_chromium_with_a_card_per_segment_and_the_forest_plot() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    let (code, _, stderr) = run(segtune()
        .arg("demo")
        .arg("--out")
        .arg(&out)
        .args(["--partners", "5000"]));
    assert_eq!(code, 0, "{stderr}");
    let run_dir = out.join("run");
    let report = run_dir.join("report.html");
    let ids = segment_ids(&run_dir);
    let manifest_path = run_dir.join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("manifest"))
            .expect("JSON");
    assert_eq!(
        manifest["rows"]["segments"].as_u64(),
        Some(ids.len() as u64)
    );
    assert!(ids.len() >= 3, "the demo has several segments: {ids:?}");

    let kept = artifacts();
    let screenshot = kept.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    std::fs::copy(&report, kept.join("report.html")).expect("copy");
    let shot = headless(
        &chromium,
        &report,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,4000".into(),
        ],
    );
    let see = format!("(screenshot: {})", screenshot.display());
    assert!(shot.success, "chromium failed {see}:\n{}", shot.stderr);
    assert_eq!(
        console_messages(&shot.stderr),
        Vec::<&str>::new(),
        "console messages {see}"
    );
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("no screenshot {see}: {e}"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG {see}");
    assert!(
        png.len() > 50_000,
        "a blank screenshot? {} bytes {see}",
        png.len()
    );

    let dump = headless(&chromium, &report, &["--dump-dom".into()]);
    assert!(dump.success, "chromium failed {see}:\n{}", dump.stderr);
    assert_eq!(
        console_messages(&dump.stderr),
        Vec::<&str>::new(),
        "console messages {see}"
    );
    let dom = dump.stdout;
    std::fs::write(kept.join("report.dom.html"), &dom).expect("write DOM");
    assert_eq!(
        dom.matches("class=\"segment-card\"").count(),
        ids.len(),
        "one card per segment {see}"
    );
    for id in &ids {
        let card = element(
            &dom,
            &format!("<section class=\"segment-card\" id=\"segment-{id}\">"),
            "</section>",
        );
        assert!(card.contains("<svg"), "segment {id}'s profile chart {see}");
        assert!(
            card.contains("What to incentivise"),
            "segment {id}: what to incentivise {see}"
        );
    }
    let forest = element(&dom, "id=\"forest-plot\"", "</div>");
    assert!(forest.contains("<svg"), "the forest plot is an SVG {see}");
    let warnings = element(&dom, "<section id=\"warnings\">", "</section>");
    assert!(
        warnings.contains("<li>") || warnings.contains("No warnings"),
        "warnings listed or none said {see}"
    );
    let changes = element(&dom, "<section id=\"weight-changes\">", "</section>");
    assert_eq!(
        changes.matches("<svg").count(),
        ids.len(),
        "one before/after chart per segment {see}"
    );
    assert!(
        dom.contains("id=\"next-period\""),
        "what changes next period {see}"
    );
    for outside in [
        "<script",
        "<link",
        "<iframe",
        "src=\"http",
        "href=\"http",
        "url(http",
    ] {
        assert!(
            !dom.contains(outside),
            "self-contained: found {outside} {see}"
        );
    }

    // Approved with an override that renames a segment: the approver's name
    // and the new name show as text, in the approval note and on the card.
    let overrides = dir.path().join("overrides.toml");
    std::fs::write(
        &overrides,
        format!(
            "[[rename]]\nsegment = {}\nname = {OVERRIDE_NAME:?}\n",
            ids[0]
        ),
    )
    .expect("write overrides");
    let (code, _, stderr) = run(segtune()
        .arg("approve")
        .arg(&run_dir)
        .args(["--by", "Ops <em>Lead</em>", "--overrides"])
        .arg(&overrides));
    assert_eq!(code, 0, "{stderr}");
    let dump = headless(&chromium, &report, &["--dump-dom".into()]);
    assert!(dump.success, "chromium failed:\n{}", dump.stderr);
    assert_eq!(console_messages(&dump.stderr), Vec::<&str>::new());
    let approval = element(&dump.stdout, "id=\"approval\"", "</div>");
    let as_text = "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;Stars&lt;/b&gt;";
    assert!(
        approval.contains("Ops &lt;em&gt;Lead&lt;/em&gt;") && approval.contains(as_text),
        "shown as text: {approval}"
    );
    let card = element(
        &dump.stdout,
        &format!("<section class=\"segment-card\" id=\"segment-{}\">", ids[0]),
        "</section>",
    );
    assert!(
        card.contains(as_text),
        "the card shows the new name as text: {card}"
    );
    assert!(
        !dump.stdout.contains("<img") && !dump.stdout.contains("<em>Lead"),
        "HTML from people must not become markup: {approval}"
    );
}

#[test]
fn the_console_check_catches_a_page_error() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("probe.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><title>probe</title><p>probe</p>\
         <script>console.error(\"segtune-probe\"); missing_function();</script>",
    )
    .expect("write");
    let browser = headless(&chromium, &page, &["--dump-dom".into()]);
    assert!(browser.success, "{}", browser.stderr);
    assert!(
        browser.stdout.contains("<p>probe</p>"),
        "{}",
        browser.stdout
    );
    let messages = console_messages(&browser.stderr);
    assert!(
        messages.iter().any(|line| line.contains("segtune-probe")),
        "console.error not seen:\n{}",
        browser.stderr
    );
    assert!(
        messages.iter().any(|line| line.contains("Uncaught")),
        "uncaught error not seen:\n{}",
        browser.stderr
    );
}

/// A generated program of `partners`, run with k fixed: its report's bytes
/// and its number of tags.
fn report_size(dir: &Path, partners: usize) -> (usize, usize) {
    let data = dir.join(format!("data-{partners}"));
    generate_into(
        &data,
        &["--partners", &partners.to_string(), "--periods", "1"],
    );
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let path = data.join("fixed-k.toml");
    std::fs::write(
        &path,
        format!("{config}\n[segments]\nk = 4\nbootstrap = 0\n"),
    )
    .expect("write");
    let out = dir.join(format!("run-{partners}"));
    let (code, _, stderr) = run(&mut segtune_run(&path, &out));
    assert_eq!(code, 0, "{stderr}");
    let page = std::fs::read_to_string(out.join("report.html")).expect("report");
    (page.len(), page.matches('<').count())
}

#[test]
fn the_report_does_not_grow_with_the_partners() {
    // Ten times the partners, the same segments and schemes: the page may
    // differ by its numbers and by cells that gain an estimate, not by
    // anything per partner (one byte per partner would add 36 kB, 20 %).
    let dir = tempfile::tempdir().expect("tempdir");
    let (small_bytes, small_tags) = report_size(dir.path(), 4_000);
    let (large_bytes, large_tags) = report_size(dir.path(), 40_000);
    assert!(
        large_bytes < 1_000_000 && small_bytes < 1_000_000,
        "{small_bytes} and {large_bytes} bytes"
    );
    let growth = |small: usize, large: usize| large as f64 / small as f64 - 1.0;
    assert!(
        growth(small_bytes, large_bytes).abs() < 0.08,
        "{small_bytes} bytes at 4000 partners, {large_bytes} at 40000"
    );
    assert!(
        growth(small_tags, large_tags).abs() < 0.08,
        "{small_tags} tags at 4000 partners, {large_tags} at 40000"
    );
}
