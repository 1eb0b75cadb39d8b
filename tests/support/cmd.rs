//! Running child processes with captured output, a timeout, and no leftovers.

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default upper bound for one command; a test that hits it fails with the output so far.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Makes the kernel SIGKILL the child when the thread that spawned it dies, so that an
/// aborted test binary (e.g. killed by a CI timeout) leaves no registry behind. Tests
/// spawn from their own thread, which lives as long as the test.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How an argument is shown in messages: a `--…password=VALUE` one as `--…password=***`.
fn shown_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((flag, _)) if flag.starts_with("--") && flag.ends_with("password") => {
            format!("{flag}=***")
        }
        _ => arg.to_string(),
    }
}

/// A command builder (thin wrapper around `std::process::Command`).
pub struct Cmd {
    cmd: Command,
    shown: Vec<String>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// A command whose `PATH` starts with the tool cache.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref();
        let mut cmd = Command::new(program);
        cmd.env("PATH", super::tools::child_path());
        die_with_parent(&mut cmd);
        let name = Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned();
        Cmd {
            cmd,
            shown: vec![name],
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
        }
    }

    /// One argument. The value of a `--…password=VALUE` argument is shown as `***` in
    /// messages: pass secrets in that form.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.shown.push(shown_arg(&arg.as_ref().to_string_lossy()));
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as it would be typed (for messages).
    pub fn display(&self) -> String {
        self.shown.join(" ")
    }

    /// Starts the command in the background.
    pub fn spawn(mut self) -> Running {
        let cmdline = self.display();
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = child.stdout.take().expect("stdout pipe");
        let stderr = child.stderr.take().expect("stderr pipe");
        Running {
            child,
            cmdline,
            timeout: self.timeout,
            started: Instant::now(),
            stdout: Some(drain(stdout)),
            stderr: Some(drain(stderr)),
        }
    }

    /// Runs the command to completion (or its timeout, which fails the test).
    pub fn run(self) -> Output {
        let timeout = self.timeout;
        self.spawn().wait_timeout(timeout)
    }

    /// Runs the command and fails the test unless it exits 0.
    pub fn ok(self) -> Output {
        let out = self.run();
        out.assert_success();
        out
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A running child process; killed (SIGKILL) and reaped on drop if still running.
pub struct Running {
    child: Child,
    cmdline: String,
    timeout: Duration,
    started: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILLs the process (like `kill -9`) and collects what it printed.
    pub fn kill9(mut self) -> Output {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.collect(status)
    }

    /// Waits for the process with the command's timeout.
    pub fn wait(self) -> Output {
        let timeout = self.timeout;
        self.wait_timeout(timeout)
    }

    /// Waits until the process exits; on timeout kills it and fails the test.
    pub fn wait_timeout(mut self, timeout: Duration) -> Output {
        let deadline = self.started + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return self.collect(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let status = self.child.wait().expect("wait for killed child");
                    let out = self.collect(status);
                    panic!("command timed out after {timeout:?}\n{out}");
                }
                Err(e) => panic!("waiting for `{}` failed: {e}", self.cmdline),
            }
        }
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        let take = |h: &mut Option<JoinHandle<Vec<u8>>>| {
            h.take()
                .map(|h| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned())
                .unwrap_or_default()
        };
        Output {
            cmdline: self.cmdline.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout: take(&mut self.stdout),
            stderr: take(&mut self.stderr),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished command did.
#[derive(Clone)]
pub struct Output {
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// The last non-empty line of stderr.
    pub fn stderr_last_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    /// stdout parsed as one JSON value (fails the test otherwise).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.cmdline)?;
        match (self.code, self.signal) {
            (Some(c), _) => writeln!(f, "exit code: {c} (after {:.1?})", self.elapsed)?,
            (None, Some(s)) => writeln!(f, "killed by signal {s} (after {:.1?})", self.elapsed)?,
            _ => writeln!(f, "exit status unknown")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
