//! What the CLI shows while and after it works: a progress bar on a terminal, plain
//! lines otherwise.

use std::io::IsTerminal as _;

use aosm_artifact_operator::engine::blob::BlobOutcome;
use aosm_artifact_operator::engine::media::Descriptor;
use aosm_artifact_operator::engine::pull_files::PullSummary;
use aosm_artifact_operator::engine::{Progress, TransferSummary};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::args::OutputFormat;

/// Progress bar on a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn plan(&self, bytes: u64, _blobs: usize) {
        self.0.set_length(bytes);
    }
    fn bytes(&self, n: u64) {
        self.0.inc(n);
    }
    fn blob_done(&self, blob: &Descriptor, outcome: BlobOutcome) {
        if outcome != BlobOutcome::Copied {
            self.0.inc(blob.size);
        }
    }
    fn manifest_pushed(&self, reference: &str) {
        self.0.set_message(format!("pushed {}", short(reference)));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// One line per event, for logs and pipes.
struct Lines;

impl Progress for Lines {
    fn plan(&self, bytes: u64, blobs: usize) {
        eprintln!("transferring {blobs} blobs, {}", HumanBytes(bytes));
    }
    fn blob_done(&self, blob: &Descriptor, outcome: BlobOutcome) {
        let verb = match outcome {
            BlobOutcome::Copied => "copied",
            BlobOutcome::Skipped => "exists",
            BlobOutcome::Mounted => "mounted",
        };
        eprintln!(
            "{verb:>7} {} ({})",
            short(&blob.digest),
            HumanBytes(blob.size)
        );
    }
    fn manifest_pushed(&self, reference: &str) {
        eprintln!(" pushed {}", short(reference));
    }
}

/// Quiet when the summary is JSON on a pipe.
struct Quiet;
impl Progress for Quiet {}

fn short(s: &str) -> String {
    match s.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => s.to_string(),
    }
}

/// The progress reporter for this run.
pub fn progress(format: OutputFormat) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Box::new(Bar(bar))
    } else if format == OutputFormat::Json {
        Box::new(Quiet)
    } else {
        Box::new(Lines)
    }
}

/// Prints the human-readable result.
pub fn print_summary(s: &TransferSummary) {
    println!("{}", s.reference);
    println!("  digest:     {}", s.digest);
    if s.source_digest != s.digest {
        println!(
            "  source:     {} (index rewritten for the selected platforms)",
            s.source_digest
        );
    }
    println!("  media type: {}", s.media_type);
    println!(
        "  blobs:      {} copied, {} skipped, {} mounted; {} of {} uploaded in {:.2}s",
        s.blobs_copied,
        s.blobs_skipped,
        s.blobs_mounted,
        HumanBytes(s.bytes),
        HumanBytes(s.bytes_total),
        s.seconds
    );
    if s.referrers_copied + s.referrers_skipped > 0 {
        println!(
            "  referrers:  {} copied, {} skipped",
            s.referrers_copied, s.referrers_skipped
        );
    }
}

/// Prints `value` as one JSON line on stdout (or says on stderr that it cannot).
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot encode the summary: {e}"),
    }
}

/// Prints what `pull` wrote into `dir`.
pub fn print_pulled(summary: &PullSummary, dir: &std::path::Path) {
    println!("{}", summary.reference);
    println!("  digest:     {}", summary.digest);
    for f in &summary.files {
        println!(
            "  {} ({} bytes, {})",
            dir.join(&f.path).display(),
            f.size,
            f.digest
        );
    }
    if summary.skipped > 0 {
        println!("  skipped:    {} layers without a title", summary.skipped);
    }
}
