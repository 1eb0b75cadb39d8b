//! Shared integration-test harness.
//!
//! Everything here talks to real processes: Debian's `docker-registry`, a Kubernetes
//! control plane (`kube.rs`: etcd + kube-apiserver built by `scripts/tools.sh`), the external
//! tools cached by `scripts/tools.sh` (crane, oras, regctl, helm, skopeo, ...), an
//! in-process static HTTP server (Helm HTTP repositories) and an in-process
//! fault-injecting reverse proxy. Fixtures are made only with independent tools, never
//! with the binary under test.
//!
//! Each test file includes this module with `mod support;` and uses a subset of it.
#![allow(dead_code, unused_imports)]

pub mod cmd;
pub mod emulator;
pub mod endpoint;
pub mod env;
pub mod fileserver;
pub mod fixtures;
pub mod flux;
pub mod hostile_helm;
pub mod hostile_registry;
pub mod kube;
pub mod node;
pub mod operator;
pub mod proxy;
pub mod registry;
pub mod rt;
pub mod scripted_arm;
pub mod serve;
pub mod timeline;
pub mod tools;

pub use cmd::{Cmd, Output, Running};
pub use endpoint::Endpoint;
pub use env::TestEnv;
pub use fileserver::FileServer;
pub use kube::KubeCluster;
pub use proxy::{Fault, FaultProxy, ProxyConfig};
pub use registry::Registry;

use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Polls `probe` every `interval` until it returns `Some`, or panics with `what` once
/// `timeout` has passed. This is how tests wait for things; there are no bare sleeps.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Asserts the shape the CLI contract requires of every failure: stderr ends with one
/// line starting with `error:` that is not a multi-line dump, and returns that line.
pub fn assert_one_line_error(out: &Output) -> String {
    let line = out.stderr_last_line().to_string();
    assert!(
        line.starts_with("error:"),
        "stderr's last line must start with `error:`, got {line:?}\n{out}"
    );
    assert!(
        line.len() <= 1000,
        "the error line is suspiciously long (a Debug dump?): {line:?}\n{out}"
    );
    for bad in ["{ ", "Error {", "kind:", "source:", "backtrace"] {
        assert!(
            !line.contains(bad),
            "the error line looks like a Debug dump (contains {bad:?}): {line:?}\n{out}"
        );
    }
    // Shown with `cargo test -- --nocapture`, to review the wording of the errors.
    eprintln!("[{}] {line}", out.cmdline);
    line
}

/// The `--output json` summary of the binary under test, with every field checked for
/// presence and type (field names exactly as in the CLI contract).
#[derive(Clone, Debug)]
pub struct Summary {
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub bytes: u64,
    pub blobs_copied: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
    pub referrers_copied: u64,
    pub referrers_skipped: u64,
    pub seconds: f64,
}

impl Summary {
    #[track_caller]
    pub fn parse(out: &Output) -> Summary {
        out.assert_success();
        let v = out.json();
        assert!(
            v.is_object(),
            "--output json must print one JSON object\n{out}"
        );
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("JSON field {k:?} missing or not a string\n{out}"))
                .to_string()
        };
        let n = |k: &str| {
            v[k].as_u64().unwrap_or_else(|| {
                panic!("JSON field {k:?} missing or not a non-negative integer\n{out}")
            })
        };
        let summary = Summary {
            reference: s("reference"),
            digest: s("digest"),
            media_type: s("mediaType"),
            bytes: n("bytes"),
            blobs_copied: n("blobsCopied"),
            blobs_skipped: n("blobsSkipped"),
            blobs_mounted: n("blobsMounted"),
            referrers_copied: n("referrersCopied"),
            referrers_skipped: n("referrersSkipped"),
            seconds: v["seconds"]
                .as_f64()
                .unwrap_or_else(|| panic!("JSON field \"seconds\" missing or not a number\n{out}")),
        };
        assert!(
            summary.digest.starts_with("sha256:") && summary.digest.len() == 71,
            "digest {:?} is not a sha256 digest\n{out}",
            summary.digest
        );
        assert!(summary.seconds >= 0.0, "{out}");
        summary
    }

    /// Blobs handled in any way.
    pub fn blobs_total(&self) -> u64 {
        self.blobs_copied + self.blobs_skipped + self.blobs_mounted
    }
}

/// The row of artifact `name` in the JSON of `store list -o json`; fails the test when it
/// is not listed.
pub fn store_list_row(listed: &serde_json::Value, name: &str) -> serde_json::Value {
    listed["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["artifact"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
}
