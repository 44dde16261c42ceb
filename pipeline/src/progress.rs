//! Progress on a terminal: one spinner for the stage under way, and log
//! lines printed above it rather than through it.
//!
//! [`spinner`] shows the spinner and makes it the current one; [`LogWriter`]
//! (the writer `main` gives the log subscriber) hides the current spinner
//! while it writes a log line, so the two never share a line.

use std::io::Write;
use std::sync::Mutex;

/// The spinner on screen, if any.
static CURRENT: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// A spinner, ticking, made the current one until [`finish`].
pub fn spinner() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    if let Ok(mut current) = CURRENT.lock() {
        *current = Some(bar.clone());
    }
    bar
}

/// Clears `bar` and forgets it as the current one.
pub fn finish(bar: &indicatif::ProgressBar) {
    bar.finish_and_clear();
    if let Ok(mut current) = CURRENT.lock() {
        *current = None;
    }
}

/// Writes log lines to stderr, above the current spinner.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = CURRENT.lock().ok().and_then(|current| current.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
