//! Stage 1, ingest: reads the input tables and refuses bad data.
//!
//! An input is one Parquet file or a folder of part files read as one table
//! (files named `*.parquet`, hidden files skipped, in name order). Only the
//! configured columns are decoded. Every problem found is collected and
//! reported at once, each naming the file, the column and the row (0-based,
//! within the file) or partner: a silently smaller or wrong table would flow
//! into money decisions, so a bad part file fails the whole run.
//!
//! Internal representation: numeric columns become `f64` with NaN for null.
//! That is safe only because a NaN in the input is refused here; downstream
//! code may rely on "NaN means missing".

use hashbrown::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use segtune_data::schema::{is_numeric, is_text, COST, PARTNER_ID, SCHEME_ID, SEGMENT_ID};
use segtune_data::{PartnerId, SchemeId, HOLDOUT};

use crate::config::{LimitSettings, RunSettings};
use crate::ids::PartnerIds;

/// Most problems listed in an error message; the rest are counted.
pub const MAX_PROBLEMS_SHOWN: usize = 50;

/// One thing wrong with an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The file (or folder) concerned.
    pub file: PathBuf,
    /// The column, where one applies.
    pub column: Option<String>,
    /// The 0-based row within the file, where one applies.
    pub row: Option<usize>,
    /// The partner, where known.
    pub partner_id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.file.display())?;
        if let Some(column) = &self.column {
            write!(f, ", column `{column}`")?;
        }
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(partner) = &self.partner_id {
            write!(f, " (partner_id `{}`)", partner.escape_debug())?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Input data that cannot be used (exit code 3). Holds every problem found.
#[derive(Debug, Clone)]
pub struct IngestError {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid input data: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.problems.iter().take(MAX_PROBLEMS_SHOWN) {
            write!(f, "\n  - {problem}")?;
        }
        if n > MAX_PROBLEMS_SHOWN {
            write!(f, "\n  ... and {} more", n - MAX_PROBLEMS_SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for IngestError {}

/// A numeric column; NaN marks a missing value.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericColumn {
    /// Column name.
    pub name: String,
    /// Values, one per row, NaN for null.
    pub values: Vec<f64>,
}

impl NumericColumn {
    /// Number of missing values.
    pub fn n_missing(&self) -> usize {
        self.values.iter().filter(|v| v.is_nan()).count()
    }
}

/// A text column stored as codes into its sorted levels; `None` is null.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalColumn {
    /// Column name.
    pub name: String,
    /// Code per row (index into `levels`).
    pub codes: Vec<Option<u32>>,
    /// Distinct values, sorted.
    pub levels: Vec<String>,
}

/// The partners table.
#[derive(Debug, Clone)]
pub struct PartnersTable {
    /// Partner ids, one per row, unique.
    pub ids: PartnerIds,
    /// Numeric features in configured order.
    pub numeric: Vec<NumericColumn>,
    /// Revenue column (for shares), when it is not one of the features.
    pub revenue: NumericColumn,
    /// Categorical columns in configured order.
    pub categorical: Vec<CategoricalColumn>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// The assignments of the evaluated period, aligned to the partners table.
#[derive(Debug, Clone)]
pub struct AssignmentsTable {
    /// Row of the partner in [`PartnersTable::ids`].
    pub partner_row: Vec<u32>,
    /// Scheme per assignment (`holdout` included), as codes into `schemes`.
    pub scheme: Vec<u32>,
    /// Distinct scheme ids, sorted.
    pub schemes: Vec<String>,
    /// What the incentive paid.
    pub cost: Vec<f64>,
    /// The stratum the partner was drawn in, when given.
    pub segment_id: Vec<Option<u32>>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// The outcomes of the evaluated period, aligned to the partners table.
#[derive(Debug, Clone)]
pub struct OutcomesTable {
    /// Row of the partner in [`PartnersTable::ids`].
    pub partner_row: Vec<u32>,
    /// Outcome and covariate columns (NaN = missing).
    pub columns: Vec<NumericColumn>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// Everything read for a run.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Partners.
    pub partners: PartnersTable,
    /// Assignments, when configured.
    pub assignments: Option<AssignmentsTable>,
    /// Outcomes, when configured.
    pub outcomes: Option<OutcomesTable>,
    /// Per partner row: on the strategic list (never held out, never in lift).
    pub strategic: Vec<bool>,
}

/// The files of an input: the file itself, or a folder's `*.parquet` files in name order.
pub fn list_files(path: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let problem = |message: String| Problem {
        file: path.to_path_buf(),
        column: None,
        row: None,
        partner_id: None,
        message,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(problem(format!("cannot be read: {error}")));
            return Vec::new();
        }
    };
    if metadata.is_file() {
        return vec![path.to_path_buf()];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(problem(format!("folder cannot be listed: {error}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.')
                && !name.starts_with('_')
                && name.ends_with(".parquet")
                && p.is_file()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        problems.push(problem("folder holds no `*.parquet` part files".into()));
    }
    files
}

/// What a table needs from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Key,
    Text,
    Numeric,
}

struct ColumnSpec {
    name: String,
    role: Role,
    required: bool,
}

/// The decoded columns of one table, concatenated over its files.
struct RawTable {
    files: Vec<PathBuf>,
    /// Per file, its number of rows, for row numbers in messages.
    file_rows: Vec<(PathBuf, usize)>,
    /// Columns by name (present ones only), cast to Utf8 or Float64.
    columns: HashMap<String, Vec<ArrayRef>>,
    n_rows: usize,
}

impl RawTable {
    /// (file, row within file) of a global row.
    fn locate(&self, mut row: usize) -> (PathBuf, usize) {
        for (file, rows) in &self.file_rows {
            if row < *rows {
                return (file.clone(), row);
            }
            row -= rows;
        }
        (self.files.last().cloned().unwrap_or_default(), row)
    }

    fn strings(&self, name: &str) -> Vec<Option<&str>> {
        let mut out = Vec::with_capacity(self.n_rows);
        for array in self.columns.get(name).into_iter().flatten() {
            let array = array.as_string::<i32>();
            out.extend(array.iter());
        }
        out
    }

    fn floats(&self, name: &str) -> Vec<Option<f64>> {
        let mut out = Vec::with_capacity(self.n_rows);
        for array in self.columns.get(name).into_iter().flatten() {
            out.extend(
                array
                    .as_primitive::<arrow_array::types::Float64Type>()
                    .iter(),
            );
        }
        out
    }
}

fn type_name(data_type: &DataType) -> String {
    format!("{data_type}")
}

/// One part file, decoded: its schema, rows and the wanted columns cast to
/// Float64 or Utf8, or the problems found in it.
struct DecodedFile {
    schema: Option<Arc<Schema>>,
    rows: usize,
    columns: Vec<(String, ArrayRef)>,
    problems: Vec<Problem>,
}

/// Active [`guarded`] calls (their reader panics are not printed).
static GUARDED: AtomicUsize = AtomicUsize::new(0);

/// Runs `work`, turning a panic of the Parquet or Arrow readers (their
/// answer to some malformed files: found by fuzzing, see fuzz/README.md)
/// into an error message. Such panics are not printed; any other is.
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_reader = GUARDED.load(Ordering::SeqCst) > 0
                && info.location().is_some_and(|location| {
                    let file = location.file();
                    file.contains("parquet-") || file.contains("arrow-")
                });
            if !in_reader {
                previous(info);
            }
        }));
    });
    GUARDED.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    GUARDED.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    })
}

/// Checks one file's columns against the specs and decodes the wanted ones;
/// a reader that fails on the file (even by panicking) is a problem with it.
fn decode_file(file: &Path, specs: &[ColumnSpec], limits: &LimitSettings) -> DecodedFile {
    guarded(|| decode_file_unguarded(file, specs, limits)).unwrap_or_else(|message| {
        DecodedFile::failed(
            file,
            format!("cannot be decoded (corrupt?): the Parquet reader failed on it ({message})"),
        )
    })
}

impl DecodedFile {
    /// A file that could not be read at all.
    fn failed(file: &Path, message: String) -> Self {
        Self {
            schema: None,
            rows: 0,
            columns: Vec::new(),
            problems: vec![Problem {
                file: file.to_path_buf(),
                column: None,
                row: None,
                partner_id: None,
                message,
            }],
        }
    }
}

/// Files up to this size are read into memory before decoding: the Parquet
/// reader then parses page headers from memory, which keeps a corrupt
/// header that makes it skip byte by byte from costing a system call a
/// byte (found by fuzzing: a 8 KB file took a minute to refuse). Larger
/// files are read from disk, each row group on its own handle.
const IN_MEMORY_BYTES: u64 = 64 << 20;

fn decode_file_unguarded(file: &Path, specs: &[ColumnSpec], limits: &LimitSettings) -> DecodedFile {
    let opened = std::fs::metadata(file).and_then(|metadata| {
        if metadata.len() <= IN_MEMORY_BYTES {
            std::fs::read(file).map(|bytes| Some(bytes::Bytes::from(bytes)))
        } else {
            Ok(None)
        }
    });
    match opened {
        Ok(Some(bytes)) => decode_with(file, specs, limits, || Ok(bytes.clone())),
        Ok(None) => decode_with(file, specs, limits, || std::fs::File::open(file)),
        Err(error) => DecodedFile::failed(file, format!("cannot be opened: {error}")),
    }
}

/// [`decode_file`] over a source `open` gives afresh for each reader (the
/// bytes in memory, or a new handle on the file).
fn decode_with<R: parquet::file::reader::ChunkReader + 'static>(
    file: &Path,
    specs: &[ColumnSpec],
    limits: &LimitSettings,
    open: impl Fn() -> std::io::Result<R> + Sync,
) -> DecodedFile {
    let mut out = DecodedFile {
        schema: None,
        rows: 0,
        columns: Vec::new(),
        problems: Vec::new(),
    };
    let problem = |column: Option<&str>, message: String| Problem {
        file: file.to_path_buf(),
        column: column.map(str::to_string),
        row: None,
        partner_id: None,
        message,
    };
    let handle = match open() {
        Ok(handle) => handle,
        Err(error) => {
            out.problems
                .push(problem(None, format!("cannot be opened: {error}")));
            return out;
        }
    };
    let builder = match ParquetRecordBatchReaderBuilder::try_new(handle) {
        Ok(builder) => builder,
        Err(error) => {
            out.problems.push(problem(
                None,
                format!("is not a readable Parquet file (not Parquet, or truncated): {error}"),
            ));
            return out;
        }
    };
    let schema = builder.schema().clone();
    out.schema = Some(schema.clone());
    if schema.fields().len() > limits.max_columns {
        out.problems.push(problem(
            None,
            format!(
                "has {} columns, more than limits.max-columns = {} (raise it in [limits] if this is expected)",
                schema.fields().len(),
                limits.max_columns
            ),
        ));
        return out;
    }
    let mut indices = Vec::new();
    for spec in specs {
        match schema.index_of(&spec.name) {
            Err(_) => {
                if spec.required {
                    out.problems
                        .push(problem(Some(&spec.name), "column is missing".into()));
                }
            }
            Ok(index) => {
                let data_type = schema.field(index).data_type();
                let fits = match spec.role {
                    Role::Key | Role::Text => is_text(data_type),
                    Role::Numeric => is_numeric(data_type),
                };
                if fits {
                    indices.push(index);
                } else {
                    let wanted = match spec.role {
                        Role::Key | Role::Text => "text (Utf8)",
                        Role::Numeric => "numeric (an Arrow integer or floating type)",
                    };
                    out.problems.push(problem(
                        Some(&spec.name),
                        format!(
                            "wrong type: {} where {wanted} is expected",
                            type_name(data_type)
                        ),
                    ));
                }
            }
        }
    }
    if !out.problems.is_empty() {
        return out;
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    // Row groups decoded in parallel, each on its own file handle from the
    // footer already read, and combined in order (batches and the first
    // problem as one reader would give them).
    let metadata =
        match ArrowReaderMetadata::try_new(builder.metadata().clone(), Default::default()) {
            Ok(metadata) => metadata,
            Err(error) => {
                out.problems
                    .push(problem(None, format!("cannot be decoded: {error}")));
                return out;
            }
        };
    let groups: Vec<(Vec<RecordBatch>, Option<String>)> = (0..metadata.metadata().num_row_groups())
        .into_par_iter()
        .map(|group| {
            let reader = open()
                .map_err(|error| error.to_string())
                .and_then(|handle| {
                    ParquetRecordBatchReaderBuilder::new_with_metadata(handle, metadata.clone())
                        .with_projection(mask.clone())
                        .with_row_groups(vec![group])
                        .build()
                        .map_err(|error| error.to_string())
                });
            let mut batches = Vec::new();
            match reader {
                Err(error) => (batches, Some(error)),
                Ok(reader) => {
                    for batch in reader {
                        match batch {
                            Ok(batch) => batches.push(batch),
                            Err(error) => return (batches, Some(error.to_string())),
                        }
                    }
                    (batches, None)
                }
            }
        })
        .collect();
    let mut batches: Vec<RecordBatch> = Vec::new();
    for (group_batches, error) in groups {
        for batch in group_batches {
            out.rows += batch.num_rows();
            batches.push(batch);
        }
        if let Some(error) = error {
            out.problems.push(problem(
                None,
                format!(
                    "cannot be decoded (truncated or corrupt?) after row {}: {error}",
                    out.rows
                ),
            ));
            return out;
        }
    }
    let mut first_row = 0;
    for batch in &batches {
        for spec in specs {
            let Some(array) = batch.column_by_name(&spec.name) else {
                continue;
            };
            let target = if spec.role == Role::Numeric {
                DataType::Float64
            } else {
                DataType::Utf8
            };
            match arrow_cast::cast(array, &target) {
                Ok(cast) => {
                    if target == DataType::Utf8 {
                        if let Some(row) = first_too_long(&cast, limits.max_string_length) {
                            let value = cast.as_string::<i32>().value(row);
                            let shown: String = value.chars().take(40).collect();
                            out.problems.push(Problem {
                                file: file.to_path_buf(),
                                column: Some(spec.name.clone()),
                                row: Some(first_row + row),
                                partner_id: None,
                                message: format!(
                                    "a value of {} bytes (`{shown}...`), longer than limits.max-string-length = {}",
                                    value.len(),
                                    limits.max_string_length
                                ),
                            });
                            return out;
                        }
                    }
                    out.columns.push((spec.name.clone(), cast));
                }
                Err(error) => out.problems.push(problem(
                    Some(&spec.name),
                    format!("cannot be read as {target}: {error}"),
                )),
            }
        }
        first_row += batch.num_rows();
    }
    out
}

/// The first row of a Utf8 array whose value is longer than `max` bytes.
fn first_too_long(array: &ArrayRef, max: usize) -> Option<usize> {
    let offsets = array.as_string::<i32>().value_offsets();
    offsets
        .windows(2)
        .position(|pair| (pair[1] - pair[0]) as usize > max)
}

/// Refuses a table whose part files together hold more than
/// `limits.max-rows` rows, from their footers, before anything is decoded.
fn check_rows(path: &Path, files: &[PathBuf], limits: &LimitSettings) -> Option<Problem> {
    let rows: Vec<u64> = files
        .par_iter()
        .map(|file| {
            // An unreadable footer is reported when the file is decoded.
            guarded(|| {
                std::fs::File::open(file)
                    .ok()
                    .and_then(|handle| ParquetRecordBatchReaderBuilder::try_new(handle).ok())
                    .map_or(0, |builder| {
                        u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0)
                    })
            })
            .unwrap_or(0)
        })
        .collect();
    let total: u64 = rows.iter().sum();
    (total > limits.max_rows).then(|| Problem {
        file: path.to_path_buf(),
        column: None,
        row: None,
        partner_id: None,
        message: format!(
            "holds {total} rows in {} file(s), more than limits.max-rows = {}; refused before reading them (raise it in [limits] if the machine has the memory)",
            files.len(),
            limits.max_rows
        ),
    })
}

/// Reads one table: checks the files, their schemas and the columns' types,
/// and decodes only the wanted columns. Part files are decoded in parallel
/// and combined in file order (problems too), so the table and the messages
/// do not depend on the number of threads.
fn read_table(
    path: &Path,
    specs: &[ColumnSpec],
    limits: &LimitSettings,
    problems: &mut Vec<Problem>,
) -> Option<RawTable> {
    let files = list_files(path, problems);
    if files.is_empty() {
        return None;
    }
    if let Some(problem) = check_rows(path, &files, limits) {
        problems.push(problem);
        return None;
    }
    let decoded: Vec<DecodedFile> = files
        .par_iter()
        .map(|file| decode_file(file, specs, limits))
        .collect();
    let mut table = RawTable {
        files: files.clone(),
        file_rows: Vec::new(),
        columns: HashMap::new(),
        n_rows: 0,
    };
    let mut first_schema: Option<(&PathBuf, Arc<Schema>)> = None;
    let mut ok = true;
    for (file, decoded) in files.iter().zip(decoded) {
        let problem = |column: &str, message: String| Problem {
            file: file.clone(),
            column: Some(column.to_string()),
            row: None,
            partner_id: None,
            message,
        };
        if let Some(schema) = &decoded.schema {
            if let Some((first_file, first)) = &first_schema {
                for field in first.fields() {
                    match schema.field_with_name(field.name()) {
                        Err(_) => problems.push(problem(
                            field.name(),
                            format!("part files have conflicting schemas: the column is in `{}` but not in this file", first_file.display()),
                        )),
                        Ok(other) if other.data_type() != field.data_type() => problems.push(problem(
                            field.name(),
                            format!(
                                "part files have conflicting schemas: {} here, {} in `{}`",
                                type_name(other.data_type()),
                                type_name(field.data_type()),
                                first_file.display()
                            ),
                        )),
                        Ok(_) => {}
                    }
                }
                for field in schema.fields() {
                    if first.field_with_name(field.name()).is_err() {
                        problems.push(problem(
                            field.name(),
                            format!("part files have conflicting schemas: the column is in this file but not in `{}`", first_file.display()),
                        ));
                    }
                }
            } else {
                first_schema = Some((file, schema.clone()));
            }
        }
        if !decoded.problems.is_empty() {
            problems.extend(decoded.problems);
            ok = false;
            continue;
        }
        for (name, array) in decoded.columns {
            table.columns.entry(name).or_default().push(array);
        }
        table.file_rows.push((file.clone(), decoded.rows));
        table.n_rows += decoded.rows;
    }
    if !ok {
        return None;
    }
    if table.n_rows == 0 {
        problems.push(Problem {
            file: path.to_path_buf(),
            column: None,
            row: None,
            partner_id: None,
            message: "table is empty (0 rows)".into(),
        });
        return None;
    }
    Some(table)
}

/// Checks the key column: non-null, a valid id, unique. Returns the ids
/// (empty where invalid).
fn check_keys(table: &RawTable, problems: &mut Vec<Problem>) -> PartnerIds {
    let mut first_seen: HashMap<&str, usize> = HashMap::with_capacity(table.n_rows);
    let keys = table.strings(PARTNER_ID);
    let bytes = table
        .columns
        .get(PARTNER_ID)
        .into_iter()
        .flatten()
        .map(|array| array.as_string::<i32>().values().len())
        .sum();
    let mut out = PartnerIds::with_capacity(keys.len(), bytes);
    for (row, key) in keys.iter().enumerate() {
        let located = |message: String, partner: Option<&str>| {
            let (file, file_row) = table.locate(row);
            Problem {
                file,
                column: Some(PARTNER_ID.into()),
                row: Some(file_row),
                partner_id: partner.map(str::to_string),
                message,
            }
        };
        match key {
            None => {
                problems.push(located("partner_id is null".into(), None));
                out.push("");
            }
            Some(id) => {
                if let Err(error) = PartnerId::try_new(*id) {
                    problems.push(located(error.to_string(), None));
                    out.push("");
                    continue;
                }
                if let Some(previous) = first_seen.get(id) {
                    let (file, previous_row) = table.locate(*previous);
                    problems.push(located(
                        format!(
                            "duplicate partner_id: first seen in `{}`, row {previous_row}",
                            file.display()
                        ),
                        Some(id),
                    ));
                    out.push("");
                    continue;
                }
                first_seen.insert(id, row);
                out.push(id);
            }
        }
    }
    out
}

/// The partner of each row of a table, for messages.
trait RowKeys {
    /// The row's partner_id, when it has a valid one.
    fn key(&self, row: usize) -> Option<&str>;
}

impl RowKeys for PartnerIds {
    fn key(&self, row: usize) -> Option<&str> {
        self.get(row).filter(|id| !id.is_empty())
    }
}

impl RowKeys for [Option<&str>] {
    fn key(&self, row: usize) -> Option<&str> {
        self.get(row).copied().flatten()
    }
}

/// Checks a numeric column for NaN and infinity; returns it with NaN for null.
fn check_numeric(
    table: &RawTable,
    name: &str,
    keys: &(impl RowKeys + ?Sized),
    null_allowed: bool,
    problems: &mut Vec<Problem>,
) -> Vec<f64> {
    let values = table
        .columns
        .get(name)
        .into_iter()
        .flatten()
        .flat_map(|array| {
            array
                .as_primitive::<arrow_array::types::Float64Type>()
                .iter()
        });
    let mut out = Vec::with_capacity(table.n_rows);
    for (row, value) in values.enumerate() {
        let bad = match value {
            None if !null_allowed => Some("value is null".to_string()),
            Some(v) if v.is_nan() => {
                Some("NaN is not a valid value (leave it null when missing)".to_string())
            }
            Some(v) if v.is_infinite() => Some(format!("{v} is not a valid value")),
            _ => None,
        };
        if let Some(message) = bad {
            let (file, file_row) = table.locate(row);
            problems.push(Problem {
                file,
                column: Some(name.into()),
                row: Some(file_row),
                partner_id: keys.key(row).map(str::to_string),
                message,
            });
        }
        out.push(value.unwrap_or(f64::NAN));
    }
    out
}

fn categorical(name: &str, values: Vec<Option<&str>>) -> CategoricalColumn {
    // Distinct values first (no string per row), then sorted.
    let distinct: std::collections::HashSet<&str> = values.iter().flatten().copied().collect();
    let mut levels: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    levels.sort_unstable();
    let index: HashMap<&str, u32> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let codes = values
        .iter()
        .map(|v| v.and_then(|s| index.get(s).copied()))
        .collect();
    drop(index);
    CategoricalColumn {
        name: name.to_string(),
        codes,
        levels,
    }
}

/// The numeric feature columns: configured, or every numeric column of the first readable file.
fn numeric_feature_names(
    partners_path: &Path,
    features: &crate::config::FeatureSettings,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    if let Some(names) = &features.numeric {
        return names.clone();
    }
    let mut scratch = Vec::new();
    for file in list_files(partners_path, &mut scratch) {
        let Ok(handle) = std::fs::File::open(&file) else {
            continue;
        };
        let Ok(Ok(builder)) = guarded(|| ParquetRecordBatchReaderBuilder::try_new(handle)) else {
            continue;
        };
        let names: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .filter(|f| {
                f.name() != PARTNER_ID
                    && is_numeric(f.data_type())
                    && !features.categorical.contains(f.name())
            })
            .map(|f| f.name().clone())
            .collect();
        if names.is_empty() {
            problems.push(Problem {
                file,
                column: None,
                row: None,
                partner_id: None,
                message: "has no numeric feature columns (set features.numeric to name them)"
                    .into(),
            });
        }
        return names;
    }
    Vec::new()
}

/// Reads the partners table at `path` with the given feature settings.
pub fn read_partners(
    path: &Path,
    features: &crate::config::FeatureSettings,
    limits: &LimitSettings,
    problems: &mut Vec<Problem>,
) -> Option<PartnersTable> {
    let numeric_names = numeric_feature_names(path, features, problems);
    let mut specs = key_and_numeric_specs(&numeric_names);
    let revenue_is_feature = numeric_names.contains(&features.revenue);
    if !revenue_is_feature {
        specs.push(ColumnSpec {
            name: features.revenue.clone(),
            role: Role::Numeric,
            required: true,
        });
    }
    specs.extend(features.categorical.iter().map(|n| ColumnSpec {
        name: n.clone(),
        role: Role::Text,
        required: true,
    }));
    let mut table = read_table(path, &specs, limits, problems)?;
    let keys = check_keys(&table, problems);
    table.columns.remove(PARTNER_ID);
    let mut numeric = Vec::new();
    // Each column's Arrow arrays are freed once it is converted, so that the
    // table is never held twice.
    for name in &numeric_names {
        let found = problems.len();
        let values = check_numeric(&table, name, &keys, true, problems);
        // Invalid values (reported above) read as missing: judge the
        // column's spread only when every value was valid.
        let valid = problems.len() == found;
        table.columns.remove(name);
        let mut present = values.iter().filter(|v| !v.is_nan());
        match present.next() {
            None => problems.push(Problem {
                file: path.to_path_buf(),
                column: Some(name.clone()),
                row: None,
                partner_id: None,
                message: "every value is null: a feature needs at least one value".into(),
            }),
            Some(first) if valid && values.len() > 1 && present.all(|v| v == first) => {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    column: Some(name.clone()),
                    row: None,
                    partner_id: None,
                    message: format!(
                        "the feature is constant (every value is {first}): it cannot tell partners apart; leave it out of features.numeric"
                    ),
                });
            }
            Some(_) => {}
        }
        numeric.push(NumericColumn {
            name: name.clone(),
            values,
        });
    }
    let revenue = if revenue_is_feature {
        numeric
            .iter()
            .find(|c| c.name == features.revenue)
            .cloned()?
    } else {
        NumericColumn {
            name: features.revenue.clone(),
            values: check_numeric(&table, &features.revenue, &keys, true, problems),
        }
    };
    let categorical = features
        .categorical
        .iter()
        .map(|name| {
            let column = categorical(name, table.strings(name));
            table.columns.remove(name);
            column
        })
        .collect();
    Some(PartnersTable {
        ids: keys,
        numeric,
        revenue,
        categorical,
        files: table.files,
    })
}

/// Maps each row's partner_id to a partners row, refusing unknown and repeated partners.
fn align(
    table: &RawTable,
    index: &HashMap<&str, u32>,
    ids: &PartnerIds,
    problems: &mut Vec<Problem>,
) -> Vec<Option<u32>> {
    let keys = table.strings(PARTNER_ID);
    // The row that claimed each partners row (partners rows are dense, so a
    // plain vector; usize::MAX: none yet).
    let n_rows = index.values().max().map_or(0, |row| *row as usize + 1);
    let mut seen: Vec<usize> = vec![usize::MAX; n_rows];
    let mut next_guess = 0usize;
    let mut out = Vec::with_capacity(keys.len());
    for (row, key) in keys.iter().enumerate() {
        let located = |message: String, partner: Option<&str>| {
            let (file, file_row) = table.locate(row);
            Problem {
                file,
                column: Some(PARTNER_ID.into()),
                row: Some(file_row),
                partner_id: partner.map(str::to_string),
                message,
            }
        };
        let Some(id) = key else {
            problems.push(located("partner_id is null".into(), None));
            out.push(None);
            continue;
        };
        // Tables exported together usually list partners in the same
        // order: the partners row after the last one matched is tried
        // first (one comparison, in order in memory), the index otherwise.
        let guess = next_guess;
        let guessed = ids
            .get(guess)
            .filter(|candidate| candidate == id)
            .map(|_| guess as u32);
        let Some(partner_row) = guessed.or_else(|| index.get(id).copied()) else {
            problems.push(located(
                "unknown partner: not in the partners table".into(),
                Some(id),
            ));
            out.push(None);
            continue;
        };
        let previous = std::mem::replace(&mut seen[partner_row as usize], row);
        if previous != usize::MAX {
            let (file, previous_row) = table.locate(previous);
            problems.push(located(
                format!(
                    "more than one row for this partner: also `{}`, row {previous_row}",
                    file.display()
                ),
                Some(id),
            ));
            out.push(None);
            continue;
        }
        next_guess = partner_row as usize + 1;
        out.push(Some(partner_row));
    }
    out
}

/// The columns read from the assignments table.
fn assignment_specs() -> [ColumnSpec; 4] {
    [
        ColumnSpec {
            name: PARTNER_ID.into(),
            role: Role::Key,
            required: true,
        },
        ColumnSpec {
            name: SCHEME_ID.into(),
            role: Role::Text,
            required: true,
        },
        ColumnSpec {
            name: COST.into(),
            role: Role::Numeric,
            required: true,
        },
        ColumnSpec {
            name: SEGMENT_ID.into(),
            role: Role::Numeric,
            required: false,
        },
    ]
}

/// Checks the decoded assignments table and aligns it with the partners.
fn read_assignments(
    table: RawTable,
    index: &HashMap<&str, u32>,
    ids: &PartnerIds,
    known_schemes: Option<&[String]>,
    problems: &mut Vec<Problem>,
) -> AssignmentsTable {
    let rows = align(&table, index, ids, problems);
    // Borrowed ids, for messages only.
    let keys = table.strings(PARTNER_ID);
    let schemes_raw = table.strings(SCHEME_ID);
    let cost = check_numeric(&table, COST, keys.as_slice(), false, problems);
    let segment_raw = if table.columns.contains_key(SEGMENT_ID) {
        table.floats(SEGMENT_ID)
    } else {
        vec![None; table.n_rows]
    };
    let mut located = |row: usize, column: &str, message: String| {
        let (file, file_row) = table.locate(row);
        problems.push(Problem {
            file,
            column: Some(column.into()),
            row: Some(file_row),
            partner_id: keys[row].map(str::to_string),
            message,
        });
    };
    let mut segment_id = Vec::with_capacity(table.n_rows);
    for (row, value) in segment_raw.iter().enumerate() {
        match value {
            Some(v) if !(v.fract() == 0.0 && *v >= 0.0 && *v <= f64::from(u32::MAX)) => {
                located(
                    row,
                    SEGMENT_ID,
                    format!("{v} is not a segment id (a whole number from 0 to 4294967295)"),
                );
                segment_id.push(None);
            }
            other => segment_id.push(other.map(|v| v as u32)),
        }
    }
    for (row, value) in cost.iter().enumerate() {
        if *value < 0.0 {
            located(
                row,
                COST,
                format!("negative cost {value}: a cost is what the incentive paid, >= 0"),
            );
        }
    }
    for (row, scheme) in schemes_raw.iter().enumerate() {
        match scheme {
            None => located(
                row,
                SCHEME_ID,
                "scheme_id is null (use \"holdout\" for the control group)".into(),
            ),
            Some(s) => {
                if let Err(error) = SchemeId::try_new(*s) {
                    located(row, SCHEME_ID, error.to_string());
                } else if let Some(known) = known_schemes {
                    if *s != HOLDOUT && !known.iter().any(|k| k == s) {
                        located(
                            row,
                            SCHEME_ID,
                            format!(
                                "scheme `{s}` is not in tuning.schemes ({}): add it there, or correct the assignments",
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    let schemes = categorical(SCHEME_ID, schemes_raw);
    let mut out = AssignmentsTable {
        partner_row: Vec::new(),
        scheme: Vec::new(),
        schemes: schemes.levels.clone(),
        cost: Vec::new(),
        segment_id: Vec::new(),
        files: table.files.clone(),
    };
    for row in 0..table.n_rows {
        if let (Some(partner_row), Some(code)) = (rows[row], schemes.codes[row]) {
            out.partner_row.push(partner_row);
            out.scheme.push(code);
            out.cost.push(cost[row]);
            out.segment_id.push(segment_id[row]);
        }
    }
    out
}

/// Reads the Parquet file `path` as the assignments and as the outcomes
/// (the numeric columns `outcomes`) of the partners `ids`, with every check
/// `ingest` makes of those tables; the problems found. The fuzzers' way in
/// to those checks (`segtune::fuzz::tables`).
pub fn check_related_tables(
    path: &Path,
    ids: &PartnerIds,
    outcomes: &[String],
    limits: &LimitSettings,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let index = row_index(ids);
    if let Some(table) = read_table(path, &assignment_specs(), limits, &mut problems) {
        read_assignments(table, &index, ids, None, &mut problems);
    }
    let specs = key_and_numeric_specs(outcomes);
    if let Some(table) = read_table(path, &specs, limits, &mut problems) {
        read_outcomes(table, outcomes, &index, ids, &mut problems);
    }
    problems
}

/// The outcome (and covariate) columns read from the outcomes table, and
/// their specs (the key first).
fn outcome_specs(settings: &RunSettings) -> (Vec<String>, Vec<ColumnSpec>) {
    let mut names: Vec<String> = Vec::new();
    for outcome in &settings.outcomes {
        for name in std::iter::once(&outcome.name).chain(outcome.covariate.as_ref()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let specs = key_and_numeric_specs(&names);
    (names, specs)
}

/// The specs of a table keyed by `partner_id` with the numeric columns
/// `names`, every one required.
fn key_and_numeric_specs(names: &[String]) -> Vec<ColumnSpec> {
    std::iter::once(ColumnSpec {
        name: PARTNER_ID.into(),
        role: Role::Key,
        required: true,
    })
    .chain(names.iter().map(|name| ColumnSpec {
        name: name.clone(),
        role: Role::Numeric,
        required: true,
    }))
    .collect()
}

/// Each partner's row by id (a null id, read as empty, left out).
fn row_index(ids: &PartnerIds) -> HashMap<&str, u32> {
    let mut index = HashMap::with_capacity(ids.len());
    for (row, id) in ids.iter().enumerate() {
        if !id.is_empty() {
            index.insert(id, row as u32);
        }
    }
    index
}

/// Checks the decoded outcomes table and aligns it with the partners.
fn read_outcomes(
    table: RawTable,
    names: &[String],
    index: &HashMap<&str, u32>,
    ids: &PartnerIds,
    problems: &mut Vec<Problem>,
) -> OutcomesTable {
    let rows = align(&table, index, ids, problems);
    // Borrowed ids, for messages only.
    let keys = table.strings(PARTNER_ID);
    let columns: Vec<NumericColumn> = names
        .iter()
        .map(|name| NumericColumn {
            name: name.clone(),
            values: check_numeric(&table, name, keys.as_slice(), true, problems),
        })
        .collect();
    let keep: Vec<usize> = (0..table.n_rows).filter(|r| rows[*r].is_some()).collect();
    OutcomesTable {
        partner_row: keep.iter().filter_map(|r| rows[*r]).collect(),
        columns: columns
            .into_iter()
            .map(|c| NumericColumn {
                values: keep.iter().map(|r| c.values[*r]).collect(),
                name: c.name,
            })
            .collect(),
        files: table.files.clone(),
    }
}

/// Reads and checks every configured input. Returns every problem found.
pub fn ingest(settings: &RunSettings) -> Result<Inputs, IngestError> {
    let mut problems = Vec::new();
    let (outcome_names, outcome_column_specs) = outcome_specs(settings);
    let limits = &settings.limits;
    let partners = read_partners(
        &settings.inputs.partners,
        &settings.features,
        limits,
        &mut problems,
    );
    let index: HashMap<&str, u32> = partners
        .as_ref()
        .map(|p| row_index(&p.ids))
        .unwrap_or_default();
    let no_ids = PartnerIds::default();
    let ids: &PartnerIds = partners.as_ref().map_or(&no_ids, |p| &p.ids);
    // With an unreadable partners table, assignments and outcomes are still
    // read and checked on their own (their columns and values), so that one
    // run reports everything; only the match with the partners waits.
    let assignments = settings.inputs.assignments.as_ref().and_then(|path| {
        let table = read_table(path, &assignment_specs(), limits, &mut problems)?;
        partners.is_some().then(|| {
            read_assignments(
                table,
                &index,
                ids,
                settings.tuning.schemes.as_deref(),
                &mut problems,
            )
        })
    });
    let outcomes = settings.inputs.outcomes.as_ref().and_then(|path| {
        let table = read_table(path, &outcome_column_specs, limits, &mut problems)?;
        partners
            .is_some()
            .then(|| read_outcomes(table, &outcome_names, &index, ids, &mut problems))
    });
    if let Some(previous) = &settings.inputs.previous_run {
        if !previous.is_dir() {
            problems.push(Problem {
                file: previous.clone(),
                column: None,
                row: None,
                partner_id: None,
                message: "previous run folder does not exist".into(),
            });
        }
    }
    // The strategic list may name partners who are not active this period:
    // they are simply not drawn.
    let strategic_ids = settings.inputs.strategic.as_ref().and_then(|path| {
        let specs = [ColumnSpec {
            name: PARTNER_ID.into(),
            role: Role::Key,
            required: true,
        }];
        let table = read_table(path, &specs, limits, &mut problems)?;
        Some(
            table
                .strings(PARTNER_ID)
                .into_iter()
                .flatten()
                .filter_map(|id| index.get(id).copied())
                .collect::<Vec<u32>>(),
        )
    });
    drop(index);
    match partners {
        Some(partners) if problems.is_empty() => {
            let mut strategic = vec![false; partners.ids.len()];
            for row in strategic_ids.into_iter().flatten() {
                strategic[row as usize] = true;
            }
            tracing::debug!(
                partners = partners.ids.len(),
                partner_files = partners.files.len(),
                numeric = partners.numeric.len(),
                categorical = partners.categorical.len(),
                assignments = assignments.as_ref().map_or(0, |a| a.partner_row.len()),
                outcomes = outcomes.as_ref().map_or(0, |o| o.partner_row.len()),
                strategic = strategic.iter().filter(|s| **s).count(),
                "inputs read"
            );
            Ok(Inputs {
                partners,
                assignments,
                outcomes,
                strategic,
            })
        }
        _ => Err(IngestError { problems }),
    }
}
