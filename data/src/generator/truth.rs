//! Reading the ground truth back: each partner's true effect in a period,
//! for checks that compare segtune's estimates with what really happened
//! (interval coverage, the closed-loop simulation).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{DataError, Result};

/// The true effect on each outcome of the scheme a partner got (0 for the
/// holdout), in outcome units: revenue in money, counts in expected units.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueEffect {
    /// The scheme drawn (`holdout` included).
    pub scheme_id: String,
    /// Effect on `revenue`.
    pub revenue: f64,
    /// Effect on `deal_registrations` (expected count).
    pub deal_registrations: f64,
    /// Effect on `certifications_earned` (expected count).
    pub certifications_earned: f64,
}

impl TrueEffect {
    /// The effect on a generated outcome column, by its name.
    pub fn on(&self, outcome: &str) -> Option<f64> {
        match outcome {
            "revenue" => Some(self.revenue),
            "deal_registrations" => Some(self.deal_registrations),
            "certifications_earned" => Some(self.certifications_earned),
            _ => None,
        }
    }
}

fn files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut parts: Vec<PathBuf> = fs_err::read_dir(path)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        parts.sort();
        Ok(parts)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for file in files(path)? {
        let parquet_error = |source| DataError::Parquet {
            path: file.clone(),
            source,
        };
        let handle = fs_err::File::open(&file).map_err(|source| DataError::Io {
            path: file.clone(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(handle.into_parts().0)
            .map_err(parquet_error)?
            .build()
            .map_err(parquet_error)?;
        for batch in reader {
            out.push(batch.map_err(DataError::Arrow)?);
        }
    }
    Ok(out)
}

/// Every drawn partner's true effect in `period`, from a generated folder's
/// `truth/<period>/effects` (file or part files), by partner id.
pub fn read_effects(root: &Path, period: &str) -> Result<HashMap<String, TrueEffect>> {
    let folder = root.join("truth").join(period);
    let path = if folder.join("effects").is_dir() {
        folder.join("effects")
    } else {
        folder.join("effects.parquet")
    };
    let mut effects = HashMap::new();
    for batch in batches(&path)? {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let number = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
        };
        let columns = (
            text(crate::schema::PARTNER_ID),
            text(crate::schema::SCHEME_ID),
            number("effect_revenue"),
            number("effect_deal_registrations"),
            number("effect_certifications"),
        );
        let (Some(ids), Some(schemes), Some(revenue), Some(deals), Some(certifications)) = columns
        else {
            return Err(DataError::InvalidParams(format!(
                "`{}` is not a truth effects table",
                path.display()
            )));
        };
        for row in 0..batch.num_rows() {
            effects.insert(
                ids.value(row).to_string(),
                TrueEffect {
                    scheme_id: schemes.value(row).to_string(),
                    revenue: revenue.value(row),
                    deal_registrations: deals.value(row),
                    certifications_earned: certifications.value(row),
                },
            );
        }
    }
    Ok(effects)
}
