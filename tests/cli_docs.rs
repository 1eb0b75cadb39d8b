//! docs/cli.md is the CLI reference: every command's `--help`, generated from the binary.
//! This test fails while it is stale; `AOSM_UPDATE_DOCS=1 cargo test --test cli_docs`
//! rewrites it.

use std::process::Command;

const OURS: &str = env!("CARGO_BIN_EXE_aosm-artifact-operator");
const COMMANDS: &[&str] = &[
    "run",
    "copy",
    "push",
    "pull",
    "transfer",
    "store",
    "store login",
    "store push",
    "store pull",
    "store list",
    "store seal",
    "crds",
];

/// `--help` of `args`, with no environment (clap shows `[env: X=value]` values).
fn help(args: &[&str]) -> String {
    let out = Command::new(OURS)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run the binary");
    assert!(out.status.success(), "{args:?} --help failed");
    let text = String::from_utf8(out.stdout).expect("UTF-8 help");
    // Trailing spaces clap leaves on blank lines inside long help.
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn render() -> String {
    let mut doc = String::from(
        "# CLI reference\n\n\
         Generated from the binary by `AOSM_UPDATE_DOCS=1 cargo test --test cli_docs` (a test\n\
         fails while this file is stale). Exit codes: `0` success, `1` the transfer failed,\n\
         `2` bad usage or input. Errors are one line on stderr; secrets never appear in output.\n\n\
         ## aosm-artifact-operator\n\n```text\n",
    );
    doc.push_str(&help(&[]));
    doc.push_str("\n```\n");
    for c in COMMANDS {
        doc.push_str(&format!("\n## aosm-artifact-operator {c}\n\n```text\n"));
        doc.push_str(&help(&c.split(' ').collect::<Vec<_>>()));
        doc.push_str("\n```\n");
    }
    doc
}

#[test]
fn cli_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let want = render();
    if std::env::var_os("AOSM_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/cli.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/cli.md is stale: regenerate it with `AOSM_UPDATE_DOCS=1 cargo test --test cli_docs`"
    );
}
