//! Output folders that appear complete or not at all.
//!
//! Everything is written into a hidden sibling folder (`.NAME.tmp-PID`),
//! synced, and renamed into place in one step. With `force`, an existing
//! folder is first moved aside and removed only after the new one is in
//! place, so a crash at any point leaves either the old or the new folder.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::UsageError;

/// A folder being written.
#[derive(Debug)]
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
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
        fs_err::create_dir_all(&parent).context("cannot create the output's parent folder")?;
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if staging.exists() {
            fs_err::remove_dir_all(&staging)?;
        }
        fs_err::create_dir(&staging)?;
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the finished folder into place.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        sync_tree(&self.staging)?;
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
        if let Some(parent) = self.target.parent() {
            if let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }) {
                let _ = dir.sync_all();
            }
        }
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
