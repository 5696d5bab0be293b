//! SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends before it kills a job) while
//! training: the first one asks the loop to stop after the current step and write a
//! checkpoint (burn-train's `Interrupter`, which the dashboard's quit key sets too); the
//! process then exits with 128 + the signal number (130, 143) and says how to resume. A second
//! signal exits at once: every file Arcane writes is atomic, so the last complete checkpoint
//! stays usable.
//!
//! The dashboard puts the terminal in raw mode, where Ctrl-C is a key press and sends no
//! signal; [`SignalStop::terminal_signals`] turns the terminal's signal keys back on once the
//! dashboard is up, so Ctrl-C stops a run in both modes.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Result;
use burn::train::Interrupter;

/// The signals that stop a run.
#[cfg(unix)]
const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// The name of a stop signal.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// Turns SIGINT and SIGTERM into a stop request while it lives.
pub struct SignalStop {
    caught: Arc<AtomicI32>,
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
}

impl SignalStop {
    /// Handles SIGINT and SIGTERM on a background thread: the first sets `interrupter`, the
    /// second exits at once (restoring the terminal the dashboard may hold).
    #[cfg(unix)]
    pub fn install(interrupter: Interrupter) -> Result<Self> {
        let caught = Arc::new(AtomicI32::new(0));
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS)?;
        let handle = signals.handle();
        let terminal = terminal::Saved::now();
        let seen = caught.clone();
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let name = signal_name(signal);
                if seen.swap(signal, Ordering::SeqCst) == 0 {
                    interrupter.stop(Some(&format!("stopped by {name}")));
                    eprintln!(
                        "\n{name}: finishing this step and writing a checkpoint (send it again to exit at once)"
                    );
                } else {
                    terminal.restore();
                    eprintln!(
                        "\n{name} again: exiting now; the last complete checkpoint is intact"
                    );
                    std::process::exit(128 + signal);
                }
            }
        });
        Ok(Self { caught, handle })
    }

    /// Without Unix signals, runs are stopped from the dashboard only.
    #[cfg(not(unix))]
    pub fn install(_interrupter: Interrupter) -> Result<Self> {
        Ok(Self {
            caught: Arc::new(AtomicI32::new(0)),
        })
    }

    /// The first signal caught, if any.
    pub fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Makes Ctrl-C send SIGINT again on a terminal that the dashboard put in raw mode.
    pub fn terminal_signals() {
        terminal::enable_signal_keys();
    }
}

impl Drop for SignalStop {
    fn drop(&mut self) {
        #[cfg(unix)]
        self.handle.close();
    }
}

/// The terminal settings, through termios (Linux with glibc, where `libc` is a dependency).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod terminal {
    use std::io::{IsTerminal, Write};

    /// The settings of standard input before the dashboard changed them.
    pub struct Saved(Option<libc::termios>);

    impl Saved {
        pub fn now() -> Self {
            if !std::io::stdin().is_terminal() {
                return Self(None);
            }
            // SAFETY: tcgetattr writes a termios struct, which is plain data, on success only.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                Self((libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0).then_some(t))
            }
        }

        /// Puts the settings back and leaves the dashboard's alternate screen.
        pub fn restore(&self) {
            if let Some(t) = &self.0 {
                // SAFETY: tcsetattr reads the struct that tcgetattr filled.
                unsafe {
                    libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
                }
                let mut out = std::io::stdout();
                let _ = out.write_all(b"\x1b[?1049l\x1b[?25h");
                let _ = out.flush();
            }
        }
    }

    /// Sets ISIG on standard input, if it is a terminal.
    pub fn enable_signal_keys() {
        if !std::io::stdin().is_terminal() {
            return;
        }
        // SAFETY: read-modify-write of the terminal's termios struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0 {
                t.c_lflag |= libc::ISIG;
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            }
        }
    }
}

/// Elsewhere the terminal is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod terminal {
    pub struct Saved;

    impl Saved {
        #[allow(dead_code)]
        pub fn now() -> Self {
            Self
        }

        #[allow(dead_code)]
        pub fn restore(&self) {}
    }

    pub fn enable_signal_keys() {}
}

/// A run that a signal stopped after writing its checkpoint: `main` prints it and exits with
/// 128 + the signal number.
#[derive(Debug)]
pub struct Stopped {
    /// The signal.
    pub signal: i32,
    /// What the run wrote and how to continue it.
    pub message: String,
}

impl Stopped {
    /// The process exit code (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Stopped {}
