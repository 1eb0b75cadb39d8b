//! `pull REF -o DIR` against a real registry, with artifacts made by oras: the files come
//! back byte-exact under their titles (as `oras pull` writes them); an existing file is
//! kept without `--overwrite`; and a hostile artifact (titles that are absolute, climb out
//! with `..`, or lead through a symlink; built with `oras blob push` + `oras manifest
//! push`) writes nothing outside DIR and leaves no partial file.

mod support;

use std::path::Path;

use support::{Registry, TestEnv, fixtures};

/// Every file below `dir` (relative paths), sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, at: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn files_pushed_by_oras_come_back_byte_exact_and_existing_files_are_kept() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let template = env.write("in/template.json", br#"{"resources":[]}"#);
    let payload = env.write("in/sub/payload.bin", fixtures::random_bytes(300_000));
    env.oras(&reg)
        .current_dir(env.path("in"))
        .arg("push")
        .args(TestEnv::oras_flags(&reg))
        .arg(reg.reference("arm/template:1.0.0"))
        .args([
            "template.json:application/vnd.example.arm+json",
            "sub/payload.bin",
        ])
        .ok();

    let out_dir = env.path("out");
    let out = env
        .ours()
        .args(["pull", "--plain-http", "--format", "json", "-o"])
        .arg(&out_dir)
        .arg(reg.reference("arm/template:1.0.0"))
        .run();
    out.assert_success();
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    assert_eq!(
        summary["files"].as_array().map(Vec::len),
        Some(2),
        "{summary}"
    );
    assert_eq!(
        std::fs::read(out_dir.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );
    assert_eq!(
        std::fs::read(out_dir.join("sub/payload.bin")).unwrap(),
        std::fs::read(&payload).unwrap()
    );
    // The same files as oras pull writes.
    let by_oras = env.path("by-oras");
    env.oras(&reg)
        .args(["pull", "-o"])
        .arg(&by_oras)
        .args(TestEnv::oras_flags(&reg))
        .arg(reg.reference("arm/template:1.0.0"))
        .ok();
    assert_eq!(files_below(&out_dir), files_below(&by_oras));

    // An existing file is not replaced without --overwrite (exit 2, the file as it was).
    std::fs::write(out_dir.join("template.json"), b"mine").unwrap();
    let refused = env
        .ours()
        .args(["pull", "--plain-http", "-o"])
        .arg(&out_dir)
        .arg(reg.reference("arm/template:1.0.0"))
        .run();
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(refused.stderr.contains("--overwrite"), "{refused}");
    assert_eq!(
        std::fs::read(out_dir.join("template.json")).unwrap(),
        b"mine"
    );
    env.ours()
        .args(["pull", "--plain-http", "--overwrite", "-o"])
        .arg(&out_dir)
        .arg(reg.reference("arm/template:1.0.0"))
        .ok();
    assert_eq!(
        std::fs::read(out_dir.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );
}

/// Pushes one blob with `title` as a one-layer artifact `repo:tag`, with oras.
fn push_titled(env: &TestEnv, reg: &Registry, repo: &str, tag: &str, title: &str) {
    let data = env.write(
        &format!("hostile/{tag}.bin"),
        format!("payload for {title}"),
    );
    let digest = support::sha256_digest(&std::fs::read(&data).unwrap());
    env.oras(reg)
        .args(["blob", "push"])
        .args(TestEnv::oras_flags(reg))
        .arg(format!("{}@{digest}", reg.reference(repo)))
        .arg(&data)
        .ok();
    let config = "{}";
    let config_file = env.write(&format!("hostile/{tag}.config"), config);
    let config_digest = support::sha256_digest(config.as_bytes());
    env.oras(reg)
        .args(["blob", "push"])
        .args(TestEnv::oras_flags(reg))
        .arg(format!("{}@{config_digest}", reg.reference(repo)))
        .arg(&config_file)
        .ok();
    let size = std::fs::metadata(&data).unwrap().len();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": digest, "size": size,
                    "annotations": {"org.opencontainers.image.title": title}}]
    });
    let manifest_file = env.write(&format!("hostile/{tag}.json"), manifest.to_string());
    env.oras(reg)
        .args(["manifest", "push"])
        .args(TestEnv::oras_flags(reg))
        .arg(format!("{}:{tag}", reg.reference(repo)))
        .arg(&manifest_file)
        .ok();
}

#[test]
fn hostile_titles_write_nothing_outside_the_directory() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let out_dir = env.path("jail");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::os::unix::fs::symlink(&outside, out_dir.join("link")).unwrap();

    let cases = [
        ("climb", "../outside/escaped.txt", "`..`"),
        ("absolute", "/tmp/aosm-pull-absolute.txt", "absolute"),
        ("through-link", "link/escaped.txt", "symlink"),
        ("dot", "./x/../../outside/escaped.txt", "`..`"),
    ];
    for (tag, title, said) in cases {
        push_titled(&env, &reg, "hostile/art", tag, title);
        let out = env
            .ours()
            .args(["pull", "--plain-http", "-o"])
            .arg(&out_dir)
            .arg(format!("{}:{tag}", reg.reference("hostile/art")))
            .run();
        assert!(!out.success(), "{tag}: {out}");
        assert!(out.stderr.contains(said), "{tag}: {out}");
        assert_eq!(out.stderr.lines().count(), 1, "{tag}: one line: {out}");
    }
    assert!(
        files_below(&outside).is_empty(),
        "{:?}",
        files_below(&outside)
    );
    assert!(!Path::new("/tmp/aosm-pull-absolute.txt").exists());
    // Nothing in the directory either (only the test's own symlink), not even a partial
    // download.
    assert_eq!(files_below(&out_dir), ["link"]);
}

#[test]
fn a_chart_pushed_by_helm_is_pulled_as_helm_pull_names_it() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let chart = fixtures::helm_package(&env, "contoso-chart", "1.2.3", "charts");
    fixtures::helm_push(&env, &reg, &chart, "charts");
    let out_dir = env.path("out");
    env.ours()
        .args(["pull", "--plain-http", "-o"])
        .arg(&out_dir)
        .arg(reg.reference("charts/contoso-chart:1.2.3"))
        .ok();
    assert_eq!(files_below(&out_dir), ["contoso-chart-1.2.3.tgz"]);
    assert_eq!(
        std::fs::read(out_dir.join("contoso-chart-1.2.3.tgz")).unwrap(),
        std::fs::read(&chart.tgz).unwrap(),
        "the archive helm packaged, byte for byte"
    );
}
