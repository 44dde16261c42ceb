//! Shared helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("data/ has a parent")
        .to_path_buf()
}

/// The Python with the peer packages: `SEGTUNE_PYTHON`, else `.venv/bin/python`
/// at the workspace root (made by `scripts/test.sh`). Fails with instructions
/// rather than skipping: a peer check that silently does not run is no check.
pub fn peer_python() -> PathBuf {
    if let Some(python) = std::env::var_os("SEGTUNE_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the peer checks need Python with scikit-learn and pyarrow: run `bash scripts/test.sh` (it makes .venv), or set SEGTUNE_PYTHON"
    );
    venv
}

/// Runs a peer script; returns (success, stdout + stderr).
pub fn run_peer(script: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(peer_python())
        .arg(workspace_root().join(script))
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Every file under `dir` with its bytes, sorted by relative path.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                out.push((relative, std::fs::read(&path).expect("readable")));
            }
        }
    }
    out.sort();
    out
}

/// Every batch of a Parquet file.
pub fn read_batches(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}
