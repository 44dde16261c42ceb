//! Helpers: run the binary, write small Parquet inputs, snapshot folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// The `segtune` binary under test.
pub fn segtune() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segtune"));
    command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    for var in [
        "SEGTUNE_CONFIG",
        "SEGTUNE_OUT",
        "SEGTUNE_PARTNERS",
        "SEGTUNE_ASSIGNMENTS",
        "SEGTUNE_OUTCOMES",
        "SEGTUNE_PREVIOUS_RUN",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("segtune runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `segtune generate ARGS --out OUT`, which must succeed.
pub fn generate_into(out: &Path, args: &[&str]) {
    let (code, _, stderr) = run(segtune().arg("generate").args(args).arg("--out").arg(out));
    assert_eq!(code, 0, "{stderr}");
}

/// `segtune run --config CONFIG --out OUT`, to add flags and environment to.
pub fn segtune_run(config: &Path, out: &Path) -> Command {
    let mut command = segtune();
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out);
    command
}

/// A column of a test table.
pub enum Col {
    Text(&'static str, Vec<Option<&'static str>>),
    Strings(&'static str, Vec<Option<String>>),
    Float(&'static str, Vec<Option<f64>>),
    Int(&'static str, Vec<Option<i64>>),
    UInt32(&'static str, Vec<Option<u32>>),
}

impl Col {
    /// The column's name.
    pub fn name(&self) -> &'static str {
        match self {
            Col::Text(n, _)
            | Col::Strings(n, _)
            | Col::Float(n, _)
            | Col::Int(n, _)
            | Col::UInt32(n, _) => n,
        }
    }
}

/// Writes columns to a Parquet file.
pub fn write_table(path: &Path, columns: Vec<Col>) {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for column in columns {
        let (name, data_type, array): (&str, DataType, ArrayRef) = match column {
            Col::Text(name, values) => (name, DataType::Utf8, Arc::new(StringArray::from(values))),
            Col::Strings(name, values) => {
                (name, DataType::Utf8, Arc::new(StringArray::from(values)))
            }
            Col::Float(name, values) => (
                name,
                DataType::Float64,
                Arc::new(Float64Array::from(values)),
            ),
            Col::Int(name, values) => (name, DataType::Int64, Arc::new(Int64Array::from(values))),
            Col::UInt32(name, values) => {
                (name, DataType::UInt32, Arc::new(UInt32Array::from(values)))
            }
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("valid batch");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent");
    }
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).expect("create"), schema, None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// A small valid program: six partners, their assignments and outcomes, and a config.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub const IDS: [&str; 6] = ["A1", "A2", "A3", "A4", "A5", "A6"];

impl Fixture {
    pub fn new() -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        fixture.write_partners(partners_columns());
        write_table(
            &fixture.path("assignments.parquet"),
            vec![
                Col::Text(
                    "partner_id",
                    vec![Some("A1"), Some("A2"), Some("A3"), Some("A4")],
                ),
                Col::Text(
                    "scheme_id",
                    vec![
                        Some("holdout"),
                        Some("cert_bonus"),
                        Some("cert_bonus"),
                        Some("holdout"),
                    ],
                ),
                Col::Float("cost", vec![Some(0.0), Some(120.0), Some(80.5), Some(0.0)]),
                Col::UInt32("segment_id", vec![Some(1), Some(1), None, Some(2)]),
            ],
        );
        write_table(
            &fixture.path("outcomes.parquet"),
            vec![
                Col::Text("partner_id", IDS.iter().map(|s| Some(*s)).collect()),
                Col::Float(
                    "revenue",
                    vec![
                        Some(10.0),
                        Some(12.0),
                        Some(9.0),
                        None,
                        Some(3.0),
                        Some(4.0),
                    ],
                ),
                Col::Float(
                    "revenue_pre",
                    vec![Some(9.0), Some(10.0), Some(8.0), Some(1.0), None, Some(4.0)],
                ),
            ],
        );
        fixture.write_config(CONFIG);
        fixture
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write_partners(&self, columns: Vec<Col>) {
        write_table(&self.path("partners.parquet"), columns);
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.path("segtune.toml"), text).expect("config");
    }

    /// `segtune validate` on this fixture; asserts nothing was written.
    pub fn validate(&self) -> (i32, String, String) {
        let before = listing(self.dir.path());
        let result = run(segtune()
            .arg("validate")
            .arg("--config")
            .arg(self.path("segtune.toml")));
        assert_eq!(
            before,
            listing(self.dir.path()),
            "validate must write nothing"
        );
        result
    }
}

pub const CONFIG: &str = r#"period = "2026-Q3"
seed = 7

[inputs]
partners = "partners.parquet"
assignments = "assignments.parquet"
outcomes = "outcomes.parquet"

[features]
numeric = ["revenue_12m", "win_rate"]
categorical = ["tier"]
revenue = "revenue_12m"

[[outcome]]
name = "revenue"
covariate = "revenue_pre"
"#;

pub fn partners_columns() -> Vec<Col> {
    vec![
        Col::Text("partner_id", IDS.iter().map(|s| Some(*s)).collect()),
        Col::Float(
            "revenue_12m",
            vec![
                Some(100.0),
                Some(2500.5),
                None,
                Some(0.0),
                Some(77.0),
                Some(1e6),
            ],
        ),
        Col::Float(
            "win_rate",
            vec![Some(0.1), None, Some(0.5), Some(0.3), Some(0.0), Some(1.0)],
        ),
        Col::Int(
            "unused_count",
            vec![Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
        ),
        Col::Text(
            "tier",
            vec![
                Some("gold"),
                Some("silver"),
                None,
                Some("gold"),
                Some("registered"),
                Some("platinum"),
            ],
        ),
    ]
}

/// Every path under `dir` with its size, sorted.
pub fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, size));
        }
    }
    out.sort();
    out
}

/// Asserts that `text` contains every fragment.
#[track_caller]
pub fn assert_mentions(text: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(text.contains(fragment), "expected `{fragment}` in:\n{text}");
    }
}

/// The Python with the peer packages: `SEGTUNE_PYTHON`, else `.venv/bin/python`
/// at the workspace root (made by `scripts/test.sh`). Fails with instructions
/// rather than skipping: a peer check that silently does not run is no check.
pub fn peer_python() -> PathBuf {
    if let Some(python) = std::env::var_os("SEGTUNE_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the peer checks need Python with scikit-learn and pyarrow: run `bash scripts/test.sh` (it makes .venv), or set SEGTUNE_PYTHON"
    );
    venv
}

/// Runs a peer script (path relative to the workspace root); returns its stdout parsed as JSON.
pub fn run_peer(script: &str, args: &[String]) -> serde_json::Value {
    let output = Command::new(peer_python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(script),
        )
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

/// Writes a matrix as Parquet, one Float64 column per feature (f0, f1, ...).
pub fn write_matrix(path: &Path, matrix: ndarray::ArrayView2<f64>) {
    let fields: Vec<Field> = (0..matrix.ncols())
        .map(|j| Field::new(format!("f{j}"), DataType::Float64, false))
        .collect();
    let arrays: Vec<ArrayRef> = matrix
        .columns()
        .into_iter()
        .map(|c| Arc::new(Float64Array::from(c.to_vec())) as ArrayRef)
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("batch");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).expect("create"), schema, None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// Writes integer labels as Parquet (`label`).
pub fn write_labels(path: &Path, labels: &[i64]) {
    write_table(
        path,
        vec![Col::Int("label", labels.iter().map(|l| Some(*l)).collect())],
    );
}

/// A Parquet file's schema and batches.
pub fn read(path: &Path) -> (arrow_schema::SchemaRef, Vec<RecordBatch>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet");
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches");
    (schema, batches)
}

/// A text column.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect(name)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A Float64 column.
pub fn floats(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect(name)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A UInt32 column.
pub fn u32s(batches: &[RecordBatch], name: &str) -> Vec<Option<u32>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect(name)
                .as_primitive::<UInt32Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A UInt64 column.
pub fn u64s(batches: &[RecordBatch], name: &str) -> Vec<Option<u64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect(name)
                .as_primitive::<UInt64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (key, value) rows of two columns: the key text, the value text or a UInt32 as text.
pub fn pairs(path: &Path, key: &str, value: &str) -> Vec<(String, Option<String>)> {
    let file = std::fs::File::open(path).expect("exists");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let keys = batch
            .column_by_name(key)
            .expect("key")
            .as_string::<i32>()
            .clone();
        let column = batch.column_by_name(value).expect("value");
        let values: Vec<Option<String>> = match column.as_primitive_opt::<UInt32Type>() {
            Some(ids) => ids.iter().map(|v| v.map(|v| v.to_string())).collect(),
            None => column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect(),
        };
        out.extend(keys.iter().map(|k| k.expect("key").to_string()).zip(values));
    }
    out
}

/// Segment id per partner from a segments-shaped Parquet file.
pub fn segment_of(path: &Path) -> std::collections::HashMap<String, u32> {
    pairs(path, "partner_id", "segment_id")
        .into_iter()
        .map(|(partner, segment)| {
            (
                partner,
                segment.and_then(|s| s.parse().ok()).expect("a segment id"),
            )
        })
        .collect()
}

/// Rewrites a table (one file or a folder of part files) as one file with
/// row groups of `rows` rows.
pub fn rewrite_with_row_groups(input: &Path, target: &Path, rows: usize) {
    let files = parquet_files(input);
    let batches: Vec<RecordBatch> = files.iter().flat_map(|file| read(file).1).collect();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .build();
    let handle = std::fs::File::create(target).expect("create");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(handle, batches[0].schema(), Some(properties))
            .expect("writer");
    for batch in &batches {
        writer.write(batch).expect("write");
    }
    let metadata = writer.close().expect("close");
    assert!(
        metadata.row_groups().len() > 3,
        "{} row groups",
        metadata.row_groups().len()
    );
}

/// The part files of a table, in name order (or the file itself).
pub fn parquet_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .expect("folder")
            .map(|entry| entry.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    files
}

/// Two runs of a generated program (3,000 partners, k = 3, no resamples):
/// 2025-Q4 (for 2026-Q1) and 2026-Q1 (for 2026-Q2), in `dir/run-1` and
/// `dir/run-2`.
pub fn two_runs(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    generate_into(&data, &["--partners", "3000", "--periods", "2"]);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let fast = "\n[segments]\nk = 3\nbootstrap = 0\n";
    std::fs::write(
        data.join("first.toml"),
        format!("{}{fast}", config.replace("2026-Q1", "2025-Q4")),
    )
    .expect("config");
    std::fs::write(data.join("second.toml"), format!("{config}{fast}")).expect("config");
    let (first, second) = (dir.join("run-1"), dir.join("run-2"));
    for (config, out) in [("first.toml", &first), ("second.toml", &second)] {
        let (code, _, stderr) = run(&mut segtune_run(&data.join(config), out));
        assert_eq!(code, 0, "{stderr}");
    }
    (first, second)
}
