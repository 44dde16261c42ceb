//! Issue 11, crash safety: the job killed (SIGKILL) at many points of a run
//! that replaces an earlier one (--force) and of a publish. Afterwards the
//! other run folders and the published versions are byte-identical to
//! before, the run's name holds a whole run (the old one or the new one,
//! never a partial folder), `latest` points at a whole version, and the next
//! job succeeds and clears what the killed ones left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{generate_into, listing, run, segtune, segtune_run, two_runs};

/// Every file under `dir` (relative path) with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    listing(dir)
        .into_iter()
        .filter(|(path, _)| path.is_file())
        .map(|(path, _)| {
            let bytes = std::fs::read(&path).expect("read");
            (
                path.strip_prefix(dir).expect("under dir").to_path_buf(),
                bytes,
            )
        })
        .collect()
}

/// Starts `command`, kills it (SIGKILL) after `delay` unless it finished;
/// whether it was killed before finishing.
fn kill_after(command: &mut Command, delay: Duration) -> bool {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(delay);
    let finished = child.try_wait().expect("wait").is_some();
    let _ = child.kill();
    let _ = child.wait();
    !finished
}

/// Kills 16 jobs at delays spread over `full` (how long one takes here),
/// checking what each leaves with `attempt(delay)` (true when the job was
/// killed before it finished). Where the machine finished fewer than
/// `at_least` of them before their kill, the delays are halved and 16 more
/// jobs killed, up to three rounds: the timing is the machine's, the check
/// of what a kill leaves is not. The number killed.
fn kill_spread(
    full: Duration,
    at_least: usize,
    mut attempt: impl FnMut(Duration) -> bool,
) -> usize {
    let mut killed = 0;
    for round in 0..3 {
        for step in 0..16u32 {
            let delay = full.mul_f64(f64::from(step) / 16.0 / f64::from(1u32 << round));
            killed += usize::from(attempt(delay));
        }
        if killed >= at_least {
            break;
        }
    }
    killed
}

/// A whole run of this program: the files of `whole`, each the same bytes
/// (the same inputs, config and seed), the manifest aside (its timings).
fn assert_whole_run(dir: &Path, whole: &BTreeMap<PathBuf, Vec<u8>>) {
    let now = contents(dir);
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>(),
        "`{}` is not a whole run",
        dir.display()
    );
    for (path, bytes) in whole {
        if path != Path::new("manifest.json") {
            assert!(now[path] == *bytes, "`{}` differs", path.display());
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&now[Path::new("manifest.json")]).expect("manifest JSON");
    let before: serde_json::Value =
        serde_json::from_slice(&whole[Path::new("manifest.json")]).expect("manifest JSON");
    assert_eq!(manifest["run_id"], before["run_id"]);
}

/// The names of the entries of `dir`.
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Leftovers of killed jobs beside `name` in `parent`.
fn leftovers(parent: &Path, name: &str) -> Vec<String> {
    names(parent)
        .into_iter()
        .filter(|file| file.starts_with(&format!(".{name}.")))
        .collect()
}

#[test]
fn a_run_killed_anywhere_leaves_a_whole_run_and_touches_no_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "20000"]);
    let config = data.join("segtune.toml");
    let (out, other) = (dir.path().join("run"), dir.path().join("other"));
    for folder in [&out, &other] {
        let (code, _, stderr) = run(&mut segtune_run(&config, folder));
        assert_eq!(code, 0, "{stderr}");
    }
    let whole = contents(&out);
    let untouched = contents(&other);
    let data_before = contents(&data);
    // How long a whole forced run takes here, to spread the kills over it.
    let started = Instant::now();
    let (code, _, stderr) = run(segtune_run(&config, &out).arg("--force"));
    assert_eq!(code, 0, "{stderr}");
    let full = started.elapsed();
    let killed = kill_spread(full, 8, |delay| {
        let killed = kill_after(segtune_run(&config, &out).arg("--force"), delay);
        assert_whole_run(&out, &whole);
        assert!(contents(&other) == untouched, "another run folder changed");
        assert!(contents(&data) == data_before, "the inputs changed");
        killed
    });
    assert!(
        killed >= 8,
        "only {killed} runs were killed before they finished"
    );
    // The next run succeeds and clears what the killed ones left.
    let (code, _, stderr) = run(segtune_run(&config, &out).arg("--force"));
    assert_eq!(code, 0, "{stderr}");
    assert_whole_run(&out, &whole);
    assert_eq!(leftovers(dir.path(), "run"), Vec::<String>::new());
}

fn approve(run_dir: &Path) {
    let (code, _, stderr) = run(segtune().arg("approve").arg(run_dir).args(["--by", "Ops"]));
    assert_eq!(code, 0, "{stderr}");
}

fn publish(run_dir: &Path, to: &Path) -> Command {
    let mut command = segtune();
    command.arg("publish").arg(run_dir).arg("--to").arg(to);
    command
}

/// Every version under history/ is whole; `latest` points at one of them.
fn assert_versions_whole(to: &Path) -> String {
    let latest = std::fs::read_link(to.join("latest"))
        .expect("latest is a link")
        .to_string_lossy()
        .into_owned();
    for (path, _) in listing(&to.join("history")) {
        let depth = path
            .strip_prefix(to.join("history"))
            .expect("under")
            .components()
            .count();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if depth == 2 && path.is_dir() && !hidden {
            for file in ["weights.parquet", "weights.json", "weights.schema.json"] {
                assert!(
                    path.join(file).is_file(),
                    "`{}` lacks {file}",
                    path.display()
                );
            }
        }
    }
    let text = std::fs::read_to_string(to.join("latest/weights.json")).expect("latest is whole");
    let _: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    latest
}

#[test]
fn a_publish_killed_anywhere_leaves_latest_on_a_whole_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = two_runs(dir.path());
    approve(&first);
    approve(&second);
    let to = dir.path().join("published");
    let (code, _, stderr) = run(&mut publish(&first, &to));
    assert_eq!(code, 0, "{stderr}");
    let first_version = assert_versions_whole(&to);
    let history_before = contents(&to.join(&first_version));
    let (code, _, stderr) = run(&mut publish(&second, &to));
    assert_eq!(code, 0, "{stderr}");
    let second_version = assert_versions_whole(&to);
    assert_ne!(first_version, second_version);
    // Each publish killed starts from the first version only: the second
    // is written anew.
    let reset = || {
        let (code, _, stderr) = run(publish(&first, &to).arg("--rollback"));
        assert_eq!(code, 0, "{stderr}");
        if to.join(&second_version).exists() {
            std::fs::remove_dir_all(to.join(&second_version)).expect("reset");
        }
    };
    // How long that publish takes here: the quickest of three. (The first
    // publish of a run also rewrites its folder, so it is not the measure.)
    let full = (0..3)
        .map(|_| {
            reset();
            let started = Instant::now();
            let (code, _, stderr) = run(&mut publish(&second, &to));
            assert_eq!(code, 0, "{stderr}");
            started.elapsed()
        })
        .min()
        .expect("three timings");
    let killed = kill_spread(full, 4, |delay| {
        reset();
        let killed = kill_after(&mut publish(&second, &to), delay);
        let latest = assert_versions_whole(&to);
        assert!(
            latest == first_version || latest == second_version,
            "{latest}"
        );
        assert!(
            contents(&to.join(&first_version)) == history_before,
            "a published version changed"
        );
        killed
    });
    assert!(
        killed >= 4,
        "only {killed} publishes were killed before they finished"
    );
    // The next publish succeeds.
    let (code, _, stderr) = run(&mut publish(&second, &to));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(assert_versions_whole(&to), second_version);
}

/// Runs `command` with `SEGTUNE_ABORT_AT=point`, which must stop it there
/// (the process aborts as a crash would: nothing cleaned up).
fn abort_at(command: &mut Command, point: &str) {
    let (code, _, stderr) = run(command.env("SEGTUNE_ABORT_AT", point));
    assert!(
        code != 0
            && stderr.contains(&format!(
                "aborted at `{}`",
                point.split('#').next().unwrap_or(point)
            )),
        "the job did not stop at `{point}` (exit {code}): {stderr}"
    );
}

/// Hidden entries (staging folders, temporary files) in `dir`.
fn hidden(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|name| name.starts_with('.') && name != ".publish.lock")
        .collect()
}

fn status(run_dir: &Path) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    manifest["status"].as_str().expect("status").to_string()
}

/// A run folder that agrees with itself: its page is the one its manifest
/// gives (re-rendered in a copy, byte for byte), an approved run keeps its
/// proposal, and nothing half-written lies in it.
fn assert_consistent_run(run_dir: &Path) {
    assert_eq!(
        hidden(run_dir),
        Vec::<String>::new(),
        "leftovers in the run"
    );
    let copy = tempfile::tempdir().expect("temp dir");
    for (path, bytes) in contents(run_dir) {
        std::fs::write(copy.path().join(path), bytes).expect("copy");
    }
    let (code, _, stderr) = run(segtune().arg("report").arg(copy.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read(copy.path().join("report.html")).expect("page")
            == std::fs::read(run_dir.join("report.html")).expect("page"),
        "report.html does not show the manifest's status ({})",
        status(run_dir)
    );
    if status(run_dir) != "proposed" {
        assert!(run_dir.join("weights_proposed.parquet").is_file());
    }
}

/// Copies a run folder (its files) to `to`.
fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for (path, bytes) in contents(from) {
        std::fs::write(to.join(path), bytes).expect("copy");
    }
}

#[test]
fn a_job_stopped_at_each_of_its_commit_points_leaves_whole_folders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = two_runs(dir.path());
    let config = dir.path().join("data/second.toml");
    let proposed = contents(&second);
    let data_before = contents(&dir.path().join("data"));

    // A fresh run: nothing under the name until it is whole.
    let fresh = dir.path().join("fresh");
    abort_at(&mut segtune_run(&config, &fresh), "before-swap");
    assert!(!fresh.exists(), "a partial run stands under its name");
    abort_at(&mut segtune_run(&config, &fresh), "after-swap");
    assert_whole_run(&fresh, &proposed);
    // A forced run over it: the old run or the new, whole.
    for point in ["before-swap", "after-swap"] {
        abort_at(segtune_run(&config, &fresh).arg("--force"), point);
        assert_whole_run(&fresh, &proposed);
    }
    let (code, _, stderr) = run(segtune_run(&config, &fresh).arg("--force"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(leftovers(dir.path(), "fresh"), Vec::<String>::new());

    // Approval, plain and with overrides: proposed or approved, whole.
    let weights: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("weights.json")).expect("weights"))
            .expect("JSON");
    let segment = weights[0]["segment_id"].as_u64().expect("a segment");
    let overrides = dir.path().join("overrides.toml");
    std::fs::write(
        &overrides,
        format!("[[rename]]\nsegment = {segment}\nname = \"Key accounts\"\n"),
    )
    .expect("overrides");
    for (with_overrides, point) in [
        (false, "before-swap"),
        (false, "after-swap"),
        (true, "before-swap"),
        (true, "after-swap"),
    ] {
        let target = dir.path().join(format!("approve-{with_overrides}-{point}"));
        copy_run(&second, &target);
        let approve = || {
            let mut command = segtune();
            command.arg("approve").arg(&target).args(["--by", "Ops"]);
            if with_overrides {
                command.arg("--overrides").arg(&overrides);
            }
            command
        };
        abort_at(&mut approve(), point);
        assert_consistent_run(&target);
        let stopped_at = status(&target);
        assert_eq!(
            stopped_at,
            if point == "before-swap" {
                "proposed"
            } else {
                "approved"
            },
            "{point}"
        );
        if stopped_at == "proposed" {
            assert!(
                contents(&target) == proposed,
                "a stopped approval changed the run"
            );
            let (code, _, stderr) = run(&mut approve());
            assert_eq!(code, 0, "{stderr}");
            assert_consistent_run(&target);
        } else {
            // Done already: a second approval is refused, and clears what
            // the stopped one left beside the run.
            let (code, _, stderr) = run(&mut approve());
            assert_eq!(code, 2, "{stderr}");
        }
        assert_eq!(
            leftovers(dir.path(), &format!("approve-{with_overrides}-{point}")),
            Vec::<String>::new()
        );
    }

    // Publish: every point; `latest` on a whole version, the earlier
    // version untouched, and the next publish completes the job.
    approve(&first);
    approve(&second);
    let approved = contents(&second);
    for point in [
        "before-swap",
        "after-swap",
        "before-latest",
        "after-latest",
        "before-swap#2",
        "after-swap#2",
    ] {
        let to = dir
            .path()
            .join(format!("published-{}", point.replace('#', "-")));
        let (code, _, stderr) = run(&mut publish(&first, &to));
        assert_eq!(code, 0, "{stderr}");
        let first_version = assert_versions_whole(&to);
        let first_published = contents(&to.join(&first_version));
        let run_dir = dir.path().join(format!("run-{}", point.replace('#', "-")));
        copy_run(&second, &run_dir);
        std::fs::write(
            run_dir.join("manifest.json"),
            &approved[Path::new("manifest.json")],
        )
        .expect("manifest");
        abort_at(&mut publish(&run_dir, &to), point);
        let latest = assert_versions_whole(&to);
        assert!(
            contents(&to.join(&first_version)) == first_published,
            "{point}"
        );
        let second_version = format!(
            "history/2026-Q2/{}",
            serde_json::from_slice::<serde_json::Value>(&approved[Path::new("manifest.json")])
                .expect("JSON")["run_id"]
                .as_str()
                .expect("run id")
        );
        if to.join(&second_version).exists() {
            for file in ["weights.parquet", "weights.json"] {
                assert!(
                    std::fs::read(to.join(&second_version).join(file)).expect("version")
                        == approved[Path::new(file)],
                    "{point}: the new version's {file} is not the run's"
                );
            }
        }
        assert_eq!(
            latest == second_version,
            ["after-latest", "before-swap#2", "after-swap#2"].contains(&point),
            "{point}: latest is {latest}"
        );
        assert_consistent_run(&run_dir);
        assert_eq!(
            status(&run_dir) == "published",
            point == "after-swap#2",
            "{point}"
        );
        let (code, _, stderr) = run(&mut publish(&run_dir, &to));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(assert_versions_whole(&to), second_version);
        assert_eq!(
            status(&run_dir),
            "published",
            "{point}: the next publish completes the job"
        );
        assert_consistent_run(&run_dir);
        assert_eq!(hidden(&to), Vec::<String>::new(), "{point}");
        assert_eq!(
            hidden(&to.join("history/2026-Q2")),
            Vec::<String>::new(),
            "{point}"
        );
    }
    assert!(
        contents(&dir.path().join("data")) == data_before,
        "the inputs changed"
    );
}
