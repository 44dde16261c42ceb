//! The manifest and the run id.
//!
//! `run_id` is a hash of what determines the run's results: the contents of
//! every input file (not their paths, so moving inputs does not change it),
//! the resolved configuration without input paths, the seed, the previous
//! run's id and the program version. The same inputs, configuration and seed
//! therefore always give the same id, on any machine.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::RunSettings;
use crate::ingest::list_files;

/// Version of the manifest's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One input file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputFile {
    /// `partners`, `assignments`, `outcomes`, `strategic` or `previous_run`.
    pub role: &'static str,
    /// Path relative to the run folder (absolute when no relative path exists).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

fn sha256_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Files of a run folder the manifest does not hash: itself, and the page
/// (re-rendered at approval and publication).
const UNHASHED: [&str; 2] = ["manifest.json", "report.html"];

/// SHA-256 of every file of the finished run folder `dir` but the manifest
/// and the page, by file name: the manifest's `outputs`, so `approve` and
/// `publish` can tell a run folder changed after its run.
pub fn hash_outputs(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut hashes = std::collections::BTreeMap::new();
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file()
            && !name.starts_with('.')
            && !UNHASHED.contains(&name.as_str())
        {
            hashes.insert(name, sha256_file(&entry.path())?.1);
        }
    }
    Ok(hashes)
}

/// Checks the files of `run_dir` against the SHA-256 its manifest records
/// (`outputs`): one changed or missing since the run is refused as
/// invalid input (exit 3), naming the file. A run made before outputs were
/// recorded passes.
pub fn verify_outputs(
    run_dir: &Path,
    manifest: &serde_json::Value,
) -> Result<(), crate::ingest::IngestError> {
    let Some(recorded) = manifest["outputs"].as_object() else {
        return Ok(());
    };
    let problem = |name: &str, message: &str| crate::ingest::Problem {
        file: run_dir.join(name),
        column: None,
        row: None,
        partner_id: None,
        message: message.to_string(),
    };
    let mut problems = Vec::new();
    match hash_outputs(run_dir) {
        Err(error) => problems.push(problem("", &format!("cannot be read: {error:#}"))),
        Ok(found) => {
            for (name, hash) in recorded {
                match found.get(name) {
                    None => problems.push(problem(name, "is missing from the run folder")),
                    Some(now) if Some(now.as_str()) != hash.as_str() => problems.push(problem(
                        name,
                        "was changed after the run (its SHA-256 is not the one manifest.json records); run again rather than edit a run's files",
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::ingest::IngestError { problems })
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `path` relative to `base` (both made absolute), with `/` separators.
pub fn relative_to(path: &Path, base: &Path) -> String {
    let path = absolute(path);
    pathdiff::diff_paths(&path, absolute(base))
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The files of the previous run folder a run reads (its manifest aside,
/// which changes when that run is approved or published).
pub const PREVIOUS_RUN_FILES: [&str; 5] = [
    "segments.parquet",
    "weights.parquet",
    "model.json",
    "posterior.json",
    "assignments_next.parquet",
];

/// Hashes every input file: the input tables and the previous run's files.
pub fn hash_inputs(settings: &RunSettings, run_dir: &Path) -> anyhow::Result<Vec<InputFile>> {
    let mut out = Vec::new();
    let inputs = [
        ("partners", Some(&settings.inputs.partners)),
        ("assignments", settings.inputs.assignments.as_ref()),
        ("outcomes", settings.inputs.outcomes.as_ref()),
        ("strategic", settings.inputs.strategic.as_ref()),
    ];
    let previous_files: Vec<PathBuf> = settings
        .inputs
        .previous_run
        .iter()
        .flat_map(|dir| PREVIOUS_RUN_FILES.iter().map(|name| dir.join(name)))
        .filter(|path| path.exists())
        .collect();
    for (role, path) in inputs {
        let Some(path) = path else { continue };
        let mut ignored = Vec::new();
        for file in list_files(path, &mut ignored) {
            let (bytes, sha256) = sha256_file(&file)?;
            out.push(InputFile {
                role,
                path: relative_to(&file, run_dir),
                bytes,
                sha256,
            });
        }
    }
    for file in previous_files {
        let (bytes, sha256) = sha256_file(&file)?;
        out.push(InputFile {
            role: "previous_run",
            path: relative_to(&file, run_dir),
            bytes,
            sha256,
        });
    }
    Ok(out)
}

/// The resolved configuration as written to the manifest, input paths
/// relative to the run folder.
pub fn config_json(settings: &RunSettings, run_dir: &Path) -> serde_json::Value {
    let mut value = serde_json::to_value(settings).unwrap_or(serde_json::Value::Null);
    let relative = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| serde_json::Value::String(relative_to(p, run_dir)))
    };
    if let Some(inputs) = value.get_mut("inputs").and_then(|v| v.as_object_mut()) {
        inputs.insert(
            "partners".into(),
            serde_json::Value::String(relative_to(&settings.inputs.partners, run_dir)),
        );
        for (key, path) in [
            ("assignments", &settings.inputs.assignments),
            ("outcomes", &settings.inputs.outcomes),
            ("previous_run", &settings.inputs.previous_run),
            ("strategic", &settings.inputs.strategic),
        ] {
            inputs.insert(
                key.into(),
                relative(path).unwrap_or(serde_json::Value::Null),
            );
        }
    }
    value
}

/// The run id: 16 hex digits of a SHA-256 over what determines the results.
pub fn run_id(
    settings: &RunSettings,
    inputs: &[InputFile],
    previous_run_id: Option<&str>,
) -> String {
    let mut config = serde_json::to_value(settings).unwrap_or(serde_json::Value::Null);
    if let Some(object) = config.as_object_mut() {
        object.remove("inputs");
    }
    let contents: Vec<(&str, &str)> = inputs.iter().map(|i| (i.role, i.sha256.as_str())).collect();
    let key = serde_json::json!({
        "program_version": env!("CARGO_PKG_VERSION"),
        "seed": settings.seed,
        "config": config,
        "inputs": contents,
        "previous_run_id": previous_run_id,
    });
    let digest = Sha256::digest(key.to_string().as_bytes());
    hex::encode(&digest[..8])
}
