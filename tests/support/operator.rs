//! The operator as a process: `aosm-artifact-operator run`, out of cluster with a
//! kubeconfig, trusting the emulator's CA, logging JSON.

use std::path::Path;
use std::time::Duration;

use super::cmd::{Output, Running};
use super::env::TestEnv;
use super::registry::free_port;

/// A running controller and the ports it serves.
pub struct Controller {
    pub process: Running,
    pub metrics_port: u16,
}

/// Where a controller runs: the cluster's kubeconfig, the CA that signs the emulator's
/// certificate, and the controller's own namespace.
pub struct Placement<'a> {
    pub kubeconfig: &'a Path,
    pub ca_file: &'a Path,
    pub namespace: &'a str,
}

impl Controller {
    /// Starts `aosm-artifact-operator run` as `identity` (its `POD_NAME`) with extra
    /// arguments and environment variables.
    pub fn start(
        env: &TestEnv,
        at: &Placement<'_>,
        identity: &str,
        args: &[&str],
        vars: &[(&str, String)],
    ) -> Controller {
        let metrics_port = free_port();
        let health_port = free_port();
        let mut cmd = env.ours();
        for (k, v) in vars {
            cmd = cmd.env(k, v);
        }
        let process = cmd
            .arg("run")
            .args(["--namespace", at.namespace, "--log-format", "json"])
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--health-addr=127.0.0.1:{health_port}"))
            .args(["--progress-interval", "1"])
            .args(args)
            .env("KUBECONFIG", at.kubeconfig)
            .env("SSL_CERT_FILE", at.ca_file)
            .env("POD_NAME", identity)
            .env("AOSM_LOG", "info,aosm_artifact_operator=debug")
            .timeout(Duration::from_secs(900))
            .spawn();
        Controller {
            process,
            metrics_port,
        }
    }

    /// SIGTERM, then waits for a clean exit; returns what it logged.
    pub fn terminate(self) -> Output {
        // SAFETY: a plain syscall on our own child's pid.
        unsafe {
            libc::kill(self.process.pid() as i32, libc::SIGTERM);
        }
        self.process.wait_timeout(Duration::from_secs(600))
    }

    /// The body of `GET /metrics`.
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        super::rt::block_on(async move {
            reqwest::get(&url)
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics body")
        })
    }
}
