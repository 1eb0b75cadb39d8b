//! The real `docker-registry` (distribution 2.8) in token-auth mode, started on a loopback
//! port behind the ACR front (which terminates TLS), with its storage in the state dir,
//! and stopped with the emulator. Its token `service` and generated URLs are the front's.
//!
//! The child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies even if the emulator is killed
//! with SIGKILL. The kernel sends that signal when the *thread* that spawned the child
//! exits, so [`start`] must be awaited on the main thread (not inside `tokio::spawn`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors starting the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No binary found.
    #[error(
        "docker-registry not found (looked for {0}); install Debian's docker-registry (scripts/tools.sh does) or pass --registry-bin, or --no-registry"
    )]
    NotFound(String),
    /// Filesystem or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was attempted.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The registry exited or never answered.
    #[error("docker-registry did not start: {0}")]
    Failed(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}

/// How to run the registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The binary.
    pub bin: PathBuf,
    /// Listen address (port 0 = a free port); plain HTTP, so keep it on loopback.
    pub listen: SocketAddr,
    /// `host:port` clients use (the ACR front): the token `service` and the origin of
    /// the URLs the registry generates (upload `Location`s).
    pub public_host: String,
    /// Directory for config, storage and log.
    pub dir: PathBuf,
    /// Token realm (`https://<emulator>/oauth2/token`).
    pub realm: String,
    /// Token issuer.
    pub issuer: String,
    /// CA bundle that verifies token `x5c` chains.
    pub root_cert_bundle: PathBuf,
}

/// A running registry.
pub struct Registry {
    child: Child,
    /// `http://127.0.0.1:PORT` where it listens (for the front only).
    pub url: String,
    /// Its log file.
    pub log: PathBuf,
}

/// Finds the registry binary: `explicit`, else `docker-registry` on PATH, else
/// `/usr/bin/docker-registry`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, RegistryError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(RegistryError::NotFound(p.display().to_string()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("docker-registry"))
        .chain([PathBuf::from("/usr/bin/docker-registry")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            RegistryError::NotFound("docker-registry on PATH and /usr/bin/docker-registry".into())
        })
}

fn config_yaml(o: &RegistryOptions, addr: SocketAddr, secret: &str) -> String {
    let q = |p: &Path| yaml_quote(&p.display().to_string());
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  host: {public_url}\n  secret: {secret}\n  \
         headers:\n    X-Content-Type-Options: [nosniff]\n\
         auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {roots}\n",
        storage = q(&o.dir.join("storage")),
        addr = yaml_quote(&addr.to_string()),
        public_url = yaml_quote(&format!("https://{}", o.public_host)),
        secret = yaml_quote(secret),
        realm = yaml_quote(&o.realm),
        service = yaml_quote(&o.public_host),
        issuer = yaml_quote(&o.issuer),
        roots = q(&o.root_cert_bundle),
    )
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn free_port(ip: std::net::IpAddr) -> Result<u16, RegistryError> {
    let l = TcpListener::bind((ip, 0)).map_err(io("finding a free port for the registry"))?;
    Ok(l.local_addr()
        .map_err(io("finding a free port for the registry"))?
        .port())
}

/// `host:port`, bracketing an IPv6 literal.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Writes the config, starts the registry and waits until it listens. With port 0 a
/// free port is picked, and picked again if another process takes it first.
pub async fn start(o: &RegistryOptions) -> Result<Registry, RegistryError> {
    std::fs::create_dir_all(o.dir.join("storage"))
        .map_err(io(format!("creating {}", o.dir.display())))?;
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = if o.listen.port() == 0 {
            free_port(o.listen.ip())?
        } else {
            o.listen.port()
        };
        let addr = SocketAddr::new(o.listen.ip(), port);
        let url = format!("http://{addr}");
        let secret = crate::secret::Secret::random(24);
        let config = o.dir.join("config.yml");
        crate::files::write_atomic(
            &config,
            config_yaml(o, addr, secret.expose()).as_bytes(),
            true,
        )
        .map_err(io(format!("writing {}", config.display())))?;
        let log = o.dir.join("registry.log");
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("registry log"))?;
        let mut cmd = Command::new(&o.bin);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", o.bin.display())))?;
        let mut reg = Registry { child, url, log };
        match reg.wait_ready(addr).await {
            Ok(()) => return Ok(reg),
            Err(text) => {
                reg.stop().await;
                if o.listen.port() != 0 || !text.contains("address already in use") {
                    return Err(RegistryError::Failed(text));
                }
                last = text;
            }
        }
    }
    Err(RegistryError::Failed(format!(
        "no free port after {START_ATTEMPTS} attempts: {last}"
    )))
}

impl Registry {
    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let connect_to = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", tail(&self.log_text())));
            }
            // The log line is written after the listener is bound; the connect proves it.
            if self.log_text().contains("listening on")
                && TcpStream::connect_timeout(&connect_to, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no listener within {READY_TIMEOUT:?}: {}",
                    tail(&self.log_text())
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the registry exits on its own (it should not).
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!(
                "docker-registry exited with {status}: {}",
                tail(&self.log_text())
            ),
            Err(e) => format!("docker-registry: {e}"),
        }
    }

    /// SIGTERM, then SIGKILL after a grace period; waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: plain syscall on our own child's pid.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_token_auth_behind_the_front() {
        let o = RegistryOptions {
            bin: "/bin/true".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            public_host: "127.0.0.1:5000".into(),
            dir: "/state/registry".into(),
            realm: "https://127.0.0.1:1/oauth2/token".into(),
            issuer: "aosm-emulator".into(),
            root_cert_bundle: "/state/ca.pem".into(),
        };
        let y = config_yaml(&o, "127.0.0.1:6000".parse().unwrap(), "s");
        assert!(y.contains("realm: \"https://127.0.0.1:1/oauth2/token\""));
        assert!(y.contains("service: \"127.0.0.1:5000\""));
        assert!(y.contains("host: \"https://127.0.0.1:5000\""));
        assert!(y.contains("addr: \"127.0.0.1:6000\""));
        assert!(y.contains("rootcertbundle: \"/state/ca.pem\""));
        assert!(!y.contains("tls:"));
        assert_eq!(host_port("::1", 5), "[::1]:5");
    }
}
