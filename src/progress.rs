//! What long-running commands tell the user while they work.
//!
//! Owns: the three modes — bars (indicatif, one per blob and a total, with bytes
//! and rate) when stderr is a terminal, one plain line per step otherwise, and
//! nothing with `--quiet`. Must not decide what the steps are: callers do.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines elsewhere, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Progress of one command.
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
}

/// Progress of one transfer.
pub struct Task {
    bar: Option<ProgressBar>,
    mode: Mode,
    label: String,
    size: Option<u64>,
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Progress {
            mode,
            multi: MultiProgress::new(),
            total: Mutex::new(None),
        }
    }

    /// A step worth a line of its own.
    pub fn step(&self, message: impl AsRef<str>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{}", message.as_ref()),
            Mode::Bars => {
                let _ = self.multi.println(message.as_ref());
            }
        }
    }

    /// Starts the total bar for `bytes` to move.
    pub fn start_total(&self, total: u64) {
        if self.mode != Mode::Bars {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("total");
        if let Ok(mut t) = self.total.lock() {
            *t = Some(bar);
        }
    }

    /// Starts one transfer.
    pub fn task(&self, label: impl Into<String>, size: Option<u64>) -> Task {
        let label = label.into();
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = self
                .multi
                .insert_from_back(1, ProgressBar::new(size.unwrap_or(0)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar
        });
        Task {
            bar,
            mode: self.mode,
            label,
            size,
        }
    }

    /// Counts `n` bytes moved towards the total.
    pub fn advance_total(&self, n: u64) {
        if let Ok(t) = self.total.lock() {
            if let Some(bar) = t.as_ref() {
                bar.inc(n);
            }
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Ok(mut t) = self.total.lock() {
            if let Some(bar) = t.take() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

impl Task {
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Back to zero (a download starting over).
    pub fn reset(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
        }
    }

    pub fn note(&self, message: &str) {
        match self.mode {
            Mode::Lines => eprintln!("  {}: {message}", self.label),
            Mode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.println(format!("  {}: {message}", self.label));
                }
            }
            Mode::Quiet => {}
        }
    }

    pub fn done(self, what: &str) {
        match self.mode {
            Mode::Lines => match self.size {
                Some(s) => eprintln!("  {} {what} ({})", self.label, bytes(s)),
                None => eprintln!("  {} {what}", self.label),
            },
            Mode::Bars => {
                if let Some(bar) = self.bar {
                    bar.finish_and_clear();
                }
            }
            Mode::Quiet => {}
        }
    }
}
