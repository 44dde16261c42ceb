//! Output folders that appear complete or not at all.
//!
//! Everything is written into a hidden sibling folder (`.NAME.tmp-PID`),
//! every file and folder synced, and renamed into place in one step. With
//! `force`, an existing folder is exchanged with the new one in one step
//! (Linux's `renameat2(RENAME_EXCHANGE)`; elsewhere it is first moved
//! aside) and removed only after the new one is in place, so a crash at any
//! point leaves either the old or the new folder under the name, whole.
//! Staging folders that a killed job left behind (their process gone) are
//! removed when the next job for the same name starts.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::UsageError;

/// A folder being written.
#[derive(Debug)]
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
    /// Folders made for it (outermost first), removed when it is not
    /// committed and they are empty.
    created: Vec<PathBuf>,
}

impl StagedDir {
    /// Starts writing `target`. Refuses an existing non-empty `target` unless `force`.
    pub fn create(target: &Path, force: bool) -> anyhow::Result<Self> {
        let exists_non_empty = target.exists()
            && (target.is_file()
                || fs_err::read_dir(target)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true));
        if exists_non_empty && !force {
            return Err(UsageError(format!(
                "`{}` already exists: choose another folder or pass --force to replace it",
                target.display()
            ))
            .into());
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        // An output where no folder can be made (under a file, without
        // permission, on a read-only file system) is the caller's to
        // change: a usage error. Anything else (a full disk) is not.
        let created = create_dirs_synced(&parent).map_err(|error| {
            let callers = error
                .chain()
                .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
                .any(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::PermissionDenied
                            | std::io::ErrorKind::NotADirectory
                            | std::io::ErrorKind::AlreadyExists
                            | std::io::ErrorKind::ReadOnlyFilesystem
                    )
                });
            if callers {
                anyhow::Error::new(UsageError(format!(
                    "cannot create the folder for `{}`: {error:#}; choose another output",
                    target.display()
                )))
            } else {
                error.context("cannot create the output's parent folder")
            }
        })?;
        remove_stale_staging(&parent, &name);
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let made = (|| -> anyhow::Result<()> {
            if staging.exists() {
                fs_err::remove_dir_all(&staging)?;
            }
            fs_err::create_dir(&staging)?;
            Ok(())
        })();
        if let Err(error) = made {
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(error);
        }
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            committed: false,
            created,
        })
    }

    /// Starts a new version of the existing folder `target`: a staging
    /// folder holding its files (hard links, so nothing is copied; a copy
    /// where the file system has no hard links) except those named in
    /// `rewritten`, which the caller writes anew. Files are never written in
    /// place (every writer makes a new file), so the links never change
    /// `target`'s files; [`StagedDir::commit`] then swaps the new version in
    /// whole.
    pub fn edit(target: &Path, rewritten: &[&str]) -> anyhow::Result<Self> {
        if !target.is_dir() {
            return Err(UsageError(format!("`{}` is not a folder", target.display())).into());
        }
        let staged = Self::create(target, true)?;
        link_tree(target, staged.path(), rewritten)?;
        Ok(staged)
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the finished folder into place.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        sync_tree(&self.staging)?;
        crate::fault::point("before-swap");
        #[cfg(target_os = "linux")]
        if self.target.is_dir() {
            // Both names always hold a whole folder: the new one, and (under
            // the staging name, until removed) the old one.
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.staging,
                rustix::fs::CWD,
                &self.target,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .with_context(|| format!("cannot swap `{}` into place", self.target.display()))?;
            self.committed = true;
            sync_parent(&self.target)?;
            crate::fault::point("after-swap");
            fs_err::remove_dir_all(&self.staging)?;
            return Ok(self.target.clone());
        }
        let aside = if self.target.exists() {
            let name = self
                .target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let aside = self
                .target
                .with_file_name(format!(".{name}.old-{}", std::process::id()));
            fs_err::rename(&self.target, &aside)?;
            Some(aside)
        } else {
            None
        };
        if let Err(error) = fs_err::rename(&self.staging, &self.target) {
            if let Some(aside) = &aside {
                let _ = fs_err::rename(aside, &self.target);
            }
            return Err(error.into());
        }
        self.committed = true;
        sync_parent(&self.target)?;
        crate::fault::point("after-swap");
        if let Some(aside) = aside {
            fs_err::remove_dir_all(aside)?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
            // Folders made for the output go too, where still empty: a
            // failed job leaves nothing behind.
            for dir in self.created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Syncs the folder holding `path` (so that a rename or a new entry in it
/// is durable).
pub fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the folder `{}`", parent.display()))
}

/// `create_dir_all`, with each folder it creates made durable (its parent
/// synced), so that a folder renamed into a new one survives a power cut.
pub fn create_dir_all_synced(dir: &Path) -> anyhow::Result<()> {
    create_dirs_synced(dir).map(drop)
}

/// [`create_dir_all_synced`], giving the folders it created, outermost
/// first.
fn create_dirs_synced(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut created = match dir.parent() {
        Some(parent) => create_dirs_synced(parent)?,
        None => Vec::new(),
    };
    match std::fs::create_dir(dir) {
        Ok(()) => {
            sync_parent(dir)?;
            created.push(dir.to_path_buf());
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot create the folder `{}`", dir.display()))
        }
    }
    Ok(created)
}

/// Hard-links (or copies) every file under `from` into `to`, the same tree,
/// leaving out the top-level names in `skip`.
fn link_tree(from: &Path, to: &Path, skip: &[&str]) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == **s) {
            continue;
        }
        let (source, destination) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            fs_err::create_dir(&destination)?;
            link_tree(&source, &destination, &[])?;
        } else if std::fs::hard_link(&source, &destination).is_err() {
            fs_err::copy(&source, &destination)?;
        }
    }
    Ok(())
}

/// Removes what killed jobs left beside `target` (their `.NAME.tmp-PID`
/// and `.NAME.old-PID` folders, as [`StagedDir::create`] does): for commands
/// that change a folder, so that a refusal clears them too.
pub fn clear_leftovers(target: &Path) {
    if let (Some(parent), Some(name)) = (target.parent(), target.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        remove_stale_staging(parent, &name.to_string_lossy());
    }
}

/// Removes `.NAME.tmp-PID` and `.NAME.old-PID` folders in `parent` whose
/// process no longer runs (left by a killed job). Only where running
/// processes can be listed (`/proc`); elsewhere they are left.
fn remove_stale_staging(parent: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = [".tmp-", ".old-"].iter().find_map(|kind| {
            file_name
                .strip_prefix(&format!(".{name}{kind}"))
                .and_then(|pid| pid.parse::<u32>().ok())
        });
        if let Some(pid) = pid {
            if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn sync_tree(dir: &Path) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The record batches of the Parquet file `path` (a run's own outputs, read
/// back), each with the columns looked up by name: [`batch_column`].
pub fn read_batches(path: &Path) -> anyhow::Result<Vec<arrow_array::RecordBatch>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// The column `name` of `batch`, read from `path`; an error naming both.
pub fn batch_column<'a>(
    batch: &'a arrow_array::RecordBatch,
    name: &str,
    path: &Path,
) -> anyhow::Result<&'a arrow_array::ArrayRef> {
    batch
        .column_by_name(name)
        .with_context(|| format!("`{}` lacks `{name}`", path.display()))
}
