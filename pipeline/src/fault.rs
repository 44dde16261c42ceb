//! Named points where a test can stop the process as a crash would.
//!
//! `SEGTUNE_ABORT_AT=NAME` (or `NAME#N`: the N-th time the point is
//! reached) makes [`point`] abort the process there: no destructor runs and
//! nothing is cleaned up, as after SIGKILL or a power cut (without the lost
//! page cache). The crash-safety tests stop a run, an approval and a publish
//! at each of its points and check what is left on disk. Unset (as always in
//! production) a point costs one environment lookup.

use std::sync::atomic::{AtomicU32, Ordering};

/// How many times a named point was reached with the variable set.
static REACHED: AtomicU32 = AtomicU32::new(0);

/// Aborts the process if `SEGTUNE_ABORT_AT` names this point (and, with
/// `#N`, this is its N-th time).
pub fn point(name: &str) {
    let Some(wanted) = std::env::var_os("SEGTUNE_ABORT_AT") else {
        return;
    };
    let wanted = wanted.to_string_lossy();
    let (wanted, nth) = match wanted.split_once('#') {
        Some((wanted, nth)) => (wanted, nth.parse::<u32>().unwrap_or(1)),
        None => (wanted.as_ref(), 1),
    };
    if wanted == name && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("segtune: aborted at `{name}` (SEGTUNE_ABORT_AT)");
        std::process::abort();
    }
}
