//! Progress for long waits, on a terminal only: a line that counts the seconds while the work
//! runs, erased when it ends. A pipe or a log file gets the result lines alone.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Shows `what… N s` on standard error, updated every second, until dropped.
#[derive(Debug)]
pub(crate) struct Waiting {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Waiting {
    /// Starts showing `what` (nothing is shown unless standard error is a terminal).
    pub(crate) fn start(what: impl Into<String>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let what = what.into();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                eprint!("\r{what}... {} s", started.elapsed().as_secs());
                let _ = std::io::stderr().flush();
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // Stopped, or the owner is gone: erase the line.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_it_shows_nothing_and_stops_at_once() {
        // Tests run with standard error captured (not a terminal).
        let waiting = Waiting::start("waiting");
        assert!(waiting.thread.is_none());
        drop(waiting);
    }
}
