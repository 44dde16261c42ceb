//! Writing Parquet the same way every time.
//!
//! One writer configuration serves every table segtune and its generator
//! write: Snappy compression (fast, and what pyarrow, Spark and DuckDB read
//! by default) and fixed writer properties, so the same batches give the same
//! bytes. Files are written to a temporary name and renamed into place, so a
//! reader never sees half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::{DataError, Result};

/// Rows per row group: small enough for parallel decoding, large enough to compress well.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 128 * 1024;

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(DEFAULT_ROW_GROUP_SIZE))
        .set_created_by(format!("segtune {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes `batches` (all of `schema`) to `path`, atomically.
pub fn write_parquet(path: &Path, schema: Arc<Schema>, batches: &[RecordBatch]) -> Result<()> {
    write_parquet_batches(path, schema, batches.iter().cloned().map(Ok))
}

/// Writes batches to `path` as they are produced (only the batch at hand
/// and the row group being encoded are in memory), atomically: a batch that
/// cannot be built stops the write and leaves nothing under `path`.
pub fn write_parquet_batches(
    path: &Path,
    schema: Arc<Schema>,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<()> {
    let temporary = temporary_sibling(path);
    let result = (|| {
        let file = fs_err::File::create(&temporary).map_err(|source| DataError::Io {
            path: temporary.clone(),
            source,
        })?;
        let parquet_error = |source| DataError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(properties())).map_err(parquet_error)?;
        for batch in batches {
            writer.write(&batch?).map_err(parquet_error)?;
        }
        let file = writer.into_inner().map_err(parquet_error)?;
        file.sync_all().map_err(|source| DataError::Io {
            path: temporary.clone(),
            source,
        })?;
        fs_err::rename(&temporary, path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// `dir/.name.tmp`: a sibling that readers of `*.parquet` ignore.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// The name of part `index` in a part-file folder.
pub fn part_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}
