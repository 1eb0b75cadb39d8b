//! Locating the external tools installed by `scripts/tools.sh`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The cache directory of `scripts/tools.sh`: `$AOSM_TOOLS_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/tools` (empty variables count
/// as unset, as in the script's `${VAR:-default}`).
pub fn tools_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("AOSM_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = match non_empty("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(non_empty("HOME").expect("HOME is not set")).join(".cache"),
    };
    cache.join("aosm-artifact-operator").join("tools")
}

/// Where `scripts/tools.sh` puts its binaries.
pub fn bin_dir() -> PathBuf {
    tools_dir().join("bin")
}

/// `PATH` for child processes: the tool cache first, then the inherited `PATH`.
pub fn child_path() -> OsString {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin_dir()).chain(std::env::split_paths(&inherited));
    std::env::join_paths(dirs).expect("PATH contains an invalid entry")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Absolute path of an external tool; panics (failing the test, never skipping it)
/// with a hint to run `scripts/tools.sh` when the tool is missing.
pub fn require(name: &str) -> PathBuf {
    let path = child_path();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "required tool `{name}` was not found in {} nor on PATH: run scripts/tools.sh \
         (or `make test`, which runs it) to install the test tools",
        bin_dir().display()
    );
}
