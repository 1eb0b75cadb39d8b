//! A hostile Helm HTTP repository: every refusal of `copy --from-helm-repo` for what an
//! untrusted repository may send (see `src/limits.rs`). Each case runs the real binary
//! under GNU time and checks the exit code (1: the source is at fault), the one `error:`
//! line naming the limit, that nothing was tagged at the destination, that no temporary
//! file was left behind, and the process's peak RSS.
//!
//! Peak RSS measured (debug build, 2 cores, tests two at a time). For scale: the same
//! binary peaks at ~39 MiB for a copy that fails at once (connection refused), so every
//! case stays within ~8 MiB of that; the bound asserted is [`RSS_BOUND_KIB`] (64 MiB).
//!
//! | test | peak RSS | time |
//! | --- | --- | --- |
//! | `billion_laughs_index_is_refused` | 43,388 KiB (42.4 MiB) | 0.2 s |
//! | `index_just_under_the_cap_is_copied_in_bounded_memory` (45 MiB index, copied) | 48,180 KiB (47.1 MiB) | 29 s |
//! | `index_over_the_cap_is_refused_from_its_content_length` (60 MiB) | 39,500 KiB (38.6 MiB) | 0.2 s |
//! | `endless_index_is_refused_at_the_cap` | 41,788 KiB (40.8 MiB) | 1.6 s |
//! | `chart_archive_over_the_cap_is_refused`: announced 200 MiB / endless | 43,860 / 45,824 KiB (42.8 / 44.8 MiB) | 0.3 / 2.9 s |
//! | `gzip_bomb_file_over_5_mib_is_refused` | 44,800 KiB (43.8 MiB) | 0.3 s |
//! | `gzip_bomb_over_100_mib_in_total_is_refused` (112.5 MiB) | 45,080 KiB (44.0 MiB) | 0.6 s |
//! | `huge_pax_header_is_refused_before_it_is_read`: 2 MiB real / 3 GiB declared | 44,508 / 44,696 KiB (43.5 / 43.6 MiB) | 0.2 s |
//! | `archive_with_more_than_10000_entries_is_refused` | 44,684 KiB (43.6 MiB) | 0.4 s |
//! | `deeply_nested_chart_yaml_is_refused` (100,000 levels) | 45,160 KiB (44.1 MiB) | 0.3 s |
//! | `chart_yaml_with_aliases_is_refused` | 44,436 KiB (43.4 MiB) | 0.3 s |
//!
//! The 45 MiB index takes 29 s in a debug build (serde-saphyr unoptimised); a release
//! build parses a 50 MiB index in under 3 s.

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use support::cmd::Output;
use support::hostile_helm::{HostileRepo, Reply};
use support::{Registry, TestEnv, assert_one_line_error, fixtures, sha256_digest};

const MIB: u64 = 1024 * 1024;
/// Peak RSS every case must stay under: the largest measured is 47 MiB (see the table
/// above), so 64 MiB leaves room for allocator and build differences while still catching
/// a buffered index (~39 MiB + 45 MiB) or a buffered archive.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// No case may take longer than this (an endless body must be cut at the cap).
const TIME_BOUND: Duration = Duration::from_secs(120);

/// `copy --from-helm-repo <repo>/charts CHART:VERSION <dst>/<dst_path>` under GNU time,
/// with a TMPDIR of its own; returns the output and peak RSS (KiB), after checking that
/// no temporary file was left behind.
fn copy(
    env: &TestEnv,
    repo: &HostileRepo,
    chart: &str,
    dst: &Registry,
    dst_path: &str,
) -> (Output, u64) {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let rss_file = env.path(&format!("rss-{run}.txt"));
    let tmp = env.path(&format!("tmp-{run}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = env
        .ours_measured(&rss_file)
        .env("TMPDIR", &tmp)
        .args([
            "copy",
            "--from-helm-repo",
            &format!("{}/charts", repo.url()),
            "--to-plain-http",
            chart,
        ])
        .arg(dst.reference(dst_path))
        .timeout(TIME_BOUND)
        .run();
    let rss = support::env::peak_rss_kib(&rss_file);
    let left: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left behind: {left:?}\n{out}"
    );
    eprintln!(
        "[{chart}] peak RSS {rss} KiB ({:.1} MiB), {:.1?}",
        rss as f64 / 1024.0,
        out.elapsed
    );
    (out, rss)
}

/// Asserts a refusal: exit code 1, one `error:` line holding every one of `needles`,
/// nothing tagged at `dst_path`, peak RSS under the bound. Returns the line.
#[track_caller]
fn assert_refused(
    env: &TestEnv,
    (out, rss): &(Output, u64),
    dst: &Registry,
    dst_path: &str,
    needles: &[&str],
) -> String {
    out.assert_code(1);
    let line = assert_one_line_error(out);
    for needle in needles {
        assert!(
            line.contains(needle),
            "the error should say {needle:?}: {line}"
        );
    }
    env.assert_absent(dst, dst_path);
    assert!(
        *rss < RSS_BOUND_KIB,
        "peak RSS {rss} KiB is above the bound {RSS_BOUND_KIB} KiB\n{out}"
    );
    line
}

/// An `index.yaml` listing one chart version at `file` (relative to the repository).
fn index_for(name: &str, version: &str, file: &str, digest: Option<&str>) -> String {
    let digest = digest
        .map(|d| format!("    digest: {}\n", d.trim_start_matches("sha256:")))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nentries:\n  {name}:\n  - apiVersion: v2\n    name: {name}\n    \
         version: {version}\n{digest}    urls:\n    - {file}\ngenerated: \"2024-01-01T00:00:00Z\"\n"
    )
}

/// A repository serving `archive` as `/charts/<name>-<version>.tgz`, listed (with its
/// digest) in `/charts/index.yaml`.
fn repo_with_archive(name: &str, version: &str, archive: Vec<u8>) -> HostileRepo {
    let file = format!("{name}-{version}.tgz");
    let index = index_for(name, version, &file, Some(&sha256_digest(&archive)));
    HostileRepo::start(vec![
        ("/charts/index.yaml", Reply::File(Bytes::from(index))),
        (
            &format!("/charts/{file}"),
            Reply::File(Bytes::from(archive)),
        ),
    ])
}

/// A gzip member holding `data` (members concatenate into one gzip stream, which Helm's
/// Go reader and ours both read whole).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A ustar header block.
fn header(path: &str, size: u64, kind: tar::EntryType) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A whole tar entry (header, data, padding to 512 bytes).
fn tar_entry(path: &str, data: &[u8]) -> Vec<u8> {
    let mut out = header(path, data.len() as u64, tar::EntryType::Regular);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The end-of-archive marker.
fn tar_end() -> Vec<u8> {
    vec![0; 1024]
}

fn chart_yaml(name: &str, extra: &str) -> Vec<u8> {
    format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\ntype: application\n{extra}").into_bytes()
}

// ---------------------------------------------------------------------------------------
// index.yaml
// ---------------------------------------------------------------------------------------

#[test]
fn billion_laughs_index_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    // Nine levels of ten aliases each: 10^9 "lol"s once expanded, 1 KiB on the wire.
    let mut index = String::from(
        "apiVersion: v1\nlol0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..=9 {
        let prev = format!("*l{}", level - 1);
        let items = [prev.as_str(); 10].join(",");
        index.push_str(&format!("lol{level}: &l{level} [{items}]\n"));
    }
    index.push_str(
        &index_for("laughs", "0.1.0", "laughs-0.1.0.tgz", None)["apiVersion: v1\n".len()..],
    );
    let repo = HostileRepo::start(vec![(
        "/charts/index.yaml",
        Reply::File(Bytes::from(index)),
    )]);
    let run = copy(&env, &repo, "laughs:0.1.0", &dst, "charts/laughs:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/laughs:0.1.0",
        &["index.yaml", "anchors or aliases"],
    );
}

/// One realistic index entry, as `helm repo index` writes it (~600 bytes).
fn filler_entry(out: &mut String, chart: usize, version: usize) {
    let name = format!("nf-chart-{chart:05}");
    out.push_str(&format!(
        "  - apiVersion: v2\n    appVersion: 1.{version}.0\n    created: \"2024-05-01T10:00:00.123456789Z\"\n    \
         description: A Helm chart for a containerized network function of the operator's 5G core\n    \
         digest: {:064x}\n    home: https://example.com/{name}\n    icon: https://example.com/icons/{name}.png\n    \
         keywords:\n    - network\n    - function\n    maintainers:\n    - email: team@example.com\n      name: Team\n    \
         name: {name}\n    sources:\n    - https://github.com/example/{name}\n    type: application\n    urls:\n    \
         - https://charts.example.com/{name}-1.{version}.0.tgz\n    version: 1.{version}.0\n",
        chart * 1000 + version
    ));
}

#[test]
fn index_just_under_the_cap_is_copied_in_bounded_memory() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let chart = fixtures::helm_package(&env, "demo", "0.1.0", "pkg");
    let tgz = std::fs::read(&chart.tgz).unwrap();
    // ~45 MiB of realistic entries (many charts of 20 versions), then the chart asked
    // for, last, so the whole index is parsed.
    let mut index = String::from("apiVersion: v1\nentries:\n");
    let mut n = 0;
    while (index.len() as u64) < 45 * MIB {
        index.push_str(&format!("  nf-chart-{n:05}:\n"));
        for v in 0..20 {
            filler_entry(&mut index, n, v);
        }
        n += 1;
    }
    index.push_str(&format!(
        "  demo:\n  - apiVersion: v2\n    created: \"2024-05-01T10:00:00Z\"\n    digest: {}\n    name: demo\n    urls:\n    - demo-0.1.0.tgz\n    version: 0.1.0\ngenerated: \"2024-05-01T10:00:00Z\"\n",
        sha256_digest(&tgz).trim_start_matches("sha256:")
    ));
    let size = index.len() as u64;
    assert!(size > 44 * MIB && size < 50 * MIB, "index is {size} bytes");
    let repo = HostileRepo::start(vec![
        ("/charts/index.yaml", Reply::File(Bytes::from(index))),
        (
            "/charts/demo-0.1.0.tgz",
            Reply::File(Bytes::from(tgz.clone())),
        ),
    ]);
    let (out, rss) = copy(&env, &repo, "demo:0.1.0", &dst, "charts/demo:0.1.0");
    out.assert_success();
    let manifest: serde_json::Value =
        serde_json::from_slice(&env.crane_manifest(&dst, "charts/demo:0.1.0")).unwrap();
    assert_eq!(
        manifest["layers"][0]["digest"],
        sha256_digest(&tgz).as_str()
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2024-05-01T10:00:00Z"
    );
    // The index is streamed to disk and parsed from there, keeping one entry: memory
    // does not grow with it (a buffered index alone would be 45 MiB).
    assert!(
        rss < RSS_BOUND_KIB,
        "peak RSS {rss} KiB for a {size}-byte index is above {RSS_BOUND_KIB} KiB\n{out}"
    );
}

/// A lazily generated `index.yaml` of `total` bytes (endless when `None`) of valid-looking
/// entries.
fn generated_index(total: Option<u64>, announce: bool) -> Reply {
    let mut chunk = String::from("  filler:\n");
    for v in 0..100 {
        filler_entry(&mut chunk, 0, v);
    }
    Reply::Generated {
        prefix: Bytes::from_static(b"apiVersion: v1\nentries:\n"),
        chunk: Bytes::from(chunk),
        total,
        announce,
    }
}

#[test]
fn index_over_the_cap_is_refused_from_its_content_length() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let repo = HostileRepo::start(vec![(
        "/charts/index.yaml",
        generated_index(Some(60 * MIB), true),
    )]);
    let run = copy(&env, &repo, "big:0.1.0", &dst, "charts/big:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/big:0.1.0",
        &["index.yaml is larger than 50 MiB", "MAX_HELM_INDEX_BYTES"],
    );
    // Refused on the announced length: far less than the cap was sent (what was sent
    // at all sits in socket buffers).
    let served = repo.served("/charts/index.yaml");
    assert!(served < 50 * MIB, "{served} bytes were served");
}

#[test]
fn endless_index_is_refused_at_the_cap() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let repo = HostileRepo::start(vec![("/charts/index.yaml", generated_index(None, false))]);
    let run = copy(&env, &repo, "endless:0.1.0", &dst, "charts/endless:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/endless:0.1.0",
        &["index.yaml is larger than 50 MiB", "MAX_HELM_INDEX_BYTES"],
    );
    // Read up to the cap, then dropped (socket buffers hold a few MiB more at most).
    let served = repo.served("/charts/index.yaml");
    assert!(
        (50 * MIB..80 * MIB).contains(&served),
        "{served} bytes were served"
    );
}

// ---------------------------------------------------------------------------------------
// Chart archive
// ---------------------------------------------------------------------------------------

#[test]
fn chart_archive_over_the_cap_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let endless = |total: Option<u64>, announce: bool| Reply::Generated {
        prefix: Bytes::new(),
        chunk: Bytes::from(vec![0x5a; 256 * 1024]),
        total,
        announce,
    };
    let index = "apiVersion: v1\nentries:\n  announced:\n  - version: 0.1.0\n    urls: [announced-0.1.0.tgz]\n  endless:\n  - version: 0.1.0\n    urls: [endless-0.1.0.tgz]\n";
    let repo = HostileRepo::start(vec![
        ("/charts/index.yaml", Reply::File(Bytes::from(index))),
        (
            "/charts/announced-0.1.0.tgz",
            endless(Some(200 * MIB), true),
        ),
        ("/charts/endless-0.1.0.tgz", endless(None, false)),
    ]);
    for name in ["announced", "endless"] {
        let dst_path = format!("charts/{name}:0.1.0");
        let run = copy(&env, &repo, &format!("{name}:0.1.0"), &dst, &dst_path);
        assert_refused(
            &env,
            &run,
            &dst,
            &dst_path,
            &[
                &format!("chart archive {name}-0.1.0.tgz"),
                "larger than 100 MiB",
                "MAX_CHART_ARCHIVE_BYTES",
            ],
        );
    }
    let served = repo.served("/charts/endless-0.1.0.tgz");
    assert!(
        (100 * MIB..130 * MIB).contains(&served),
        "{served} bytes were served"
    );
    assert!(repo.served("/charts/announced-0.1.0.tgz") < 100 * MIB);
}

#[test]
fn gzip_bomb_file_over_5_mib_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let mut tar = tar_entry("bomb/Chart.yaml", &chart_yaml("bomb", ""));
    tar.extend(tar_entry(
        "bomb/templates/big.yaml",
        &vec![b'\n'; (5 * MIB + 1) as usize],
    ));
    tar.extend(tar_end());
    let archive = gzip(&tar);
    assert!(archive.len() < 64 * 1024, "{} bytes", archive.len());
    let repo = repo_with_archive("bomb", "0.1.0", archive);
    let run = copy(&env, &repo, "bomb:0.1.0", &dst, "charts/bomb:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/bomb:0.1.0",
        &[
            "chart archive bomb-0.1.0.tgz",
            "file bomb/templates/big.yaml decompresses to more than 5 MiB",
            "MAX_CHART_FILE_BYTES",
        ],
    );
}

#[test]
fn gzip_bomb_over_100_mib_in_total_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    // 25 files of 4.5 MiB of zeros (each under Helm's 5 MiB per file): 112.5 MiB once
    // decompressed, ~120 KiB on the wire. The zeros are one gzip member, repeated.
    let file_size = 4 * MIB + MIB / 2;
    let zeros = gzip(&vec![0; file_size as usize]);
    let mut archive = gzip(&tar_entry("many/Chart.yaml", &chart_yaml("many", "")));
    for i in 0..25 {
        archive.extend(gzip(&header(
            &format!("many/files/zeros-{i:02}.bin"),
            file_size,
            tar::EntryType::Regular,
        )));
        archive.extend_from_slice(&zeros);
    }
    archive.extend(gzip(&tar_end()));
    assert!(archive.len() < 1024 * 1024, "{} bytes", archive.len());
    let repo = repo_with_archive("many", "0.1.0", archive);
    let run = copy(&env, &repo, "many:0.1.0", &dst, "charts/many:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/many:0.1.0",
        &[
            "chart archive many-0.1.0.tgz",
            "decompress to more than 100 MiB in total",
            "MAX_CHART_DECOMPRESSED_BYTES",
        ],
    );
}

#[test]
fn huge_pax_header_is_refused_before_it_is_read() {
    let env = TestEnv::new();
    let dst = Registry::start();
    // A well-formed PAX header of 2 MiB (one `comment` record), which Go's archive/tar
    // (Helm) refuses too, before an ordinary Chart.yaml.
    let value_len = (2 * MIB) as usize - 17; // "2097152 comment=" + value + "\n"
    let record = format!("{} comment={}\n", 2 * MIB, "a".repeat(value_len));
    assert_eq!(record.len() as u64, 2 * MIB);
    let mut tar = header(
        "pax/PaxHeaders/Chart.yaml",
        2 * MIB,
        tar::EntryType::XHeader,
    );
    tar.extend_from_slice(record.as_bytes());
    tar.extend(tar_entry("pax/Chart.yaml", &chart_yaml("pax", "")));
    tar.extend(tar_end());
    // A PAX header declaring 3 GiB, followed by 8 MiB of zeros and then nothing: it must
    // be refused from its header (reading it, as the tar crate does, would buffer it).
    let mut declared = gzip(&tar_entry("pax3g/Chart.yaml", &chart_yaml("pax3g", "")));
    declared.extend(gzip(&header(
        "pax3g/PaxHeaders/x",
        3 * 1024 * MIB,
        tar::EntryType::XHeader,
    )));
    let zeros = gzip(&vec![0; MIB as usize]);
    for _ in 0..8 {
        declared.extend_from_slice(&zeros);
    }
    let (real, declared) = (gzip(&tar), declared);
    let repo = HostileRepo::start(vec![
        (
            "/charts/index.yaml",
            Reply::File(Bytes::from(format!(
                "apiVersion: v1\nentries:\n  pax:\n  - version: 0.1.0\n    digest: {}\n    urls: [pax-0.1.0.tgz]\n  pax3g:\n  - version: 0.1.0\n    urls: [pax3g-0.1.0.tgz]\n",
                sha256_digest(&real).trim_start_matches("sha256:")
            ))),
        ),
        ("/charts/pax-0.1.0.tgz", Reply::File(Bytes::from(real))),
        (
            "/charts/pax3g-0.1.0.tgz",
            Reply::File(Bytes::from(declared)),
        ),
    ]);
    for (name, size) in [("pax", "2097152 bytes"), ("pax3g", "3221225472 bytes")] {
        let dst_path = format!("charts/{name}:0.1.0");
        let run = copy(&env, &repo, &format!("{name}:0.1.0"), &dst, &dst_path);
        assert_refused(
            &env,
            &run,
            &dst,
            &dst_path,
            &[
                &format!("chart archive {name}-0.1.0.tgz"),
                &format!("tar extension header (PAX or GNU long name) of {size}, more than 1 MiB"),
                "MAX_TAR_EXTENSION_BYTES",
            ],
        );
    }
}

#[test]
fn archive_with_more_than_10000_entries_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let mut tar = tar_entry("crowd/Chart.yaml", &chart_yaml("crowd", ""));
    for i in 0..10_000 {
        tar.extend(header(
            &format!("crowd/f/{i:05}"),
            0,
            tar::EntryType::Regular,
        ));
    }
    tar.extend(tar_end());
    let repo = repo_with_archive("crowd", "0.1.0", gzip(&tar));
    let run = copy(&env, &repo, "crowd:0.1.0", &dst, "charts/crowd:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/crowd:0.1.0",
        &[
            "chart archive crowd-0.1.0.tgz",
            "more than 10000 entries",
            "MAX_CHART_ENTRIES",
        ],
    );
}

#[test]
fn deeply_nested_chart_yaml_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let depth = 100_000;
    let nested = format!("x-nested: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let mut tar = tar_entry("deep/Chart.yaml", &chart_yaml("deep", &nested));
    tar.extend(tar_end());
    let repo = repo_with_archive("deep", "0.1.0", gzip(&tar));
    let run = copy(&env, &repo, "deep:0.1.0", &dst, "charts/deep:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/deep:0.1.0",
        &[
            "chart archive deep-0.1.0.tgz",
            "deep/Chart.yaml nests deeper than 64 levels",
            "MAX_YAML_DEPTH",
        ],
    );
}

#[test]
fn chart_yaml_with_aliases_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let mut laughs = String::from("x-lol0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for level in 1..=9 {
        let items = vec![format!("*l{}", level - 1); 10].join(",");
        laughs.push_str(&format!("x-lol{level}: &l{level} [{items}]\n"));
    }
    let mut tar = tar_entry("lol/Chart.yaml", &chart_yaml("lol", &laughs));
    tar.extend(tar_end());
    let repo = repo_with_archive("lol", "0.1.0", gzip(&tar));
    let run = copy(&env, &repo, "lol:0.1.0", &dst, "charts/lol:0.1.0");
    assert_refused(
        &env,
        &run,
        &dst,
        "charts/lol:0.1.0",
        &[
            "chart archive lol-0.1.0.tgz",
            "lol/Chart.yaml uses YAML anchors or aliases",
        ],
    );
}

#[test]
fn chart_archive_not_matching_its_index_digest_is_refused() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let archive = |description: &str| {
        let mut tar = tar_entry(
            "swapped/Chart.yaml",
            &chart_yaml("swapped", &format!("description: {description}\n")),
        );
        tar.extend(tar_end());
        gzip(&tar)
    };
    // The index lists the digest of one archive; the repository serves another.
    let listed = archive("the chart the index lists");
    let served = archive("a chart swapped in behind the index");
    let file = "swapped-0.1.0.tgz";
    let index = index_for("swapped", "0.1.0", file, Some(&sha256_digest(&listed)));
    let repo = HostileRepo::start(vec![
        ("/charts/index.yaml", Reply::File(Bytes::from(index))),
        (&format!("/charts/{file}"), Reply::File(Bytes::from(served))),
    ]);
    let run = copy(&env, &repo, "swapped:0.1.0", &dst, "charts/swapped:0.1.0");
    let line = assert_refused(
        &env,
        &run,
        &dst,
        "charts/swapped:0.1.0",
        &["digest mismatch", &sha256_digest(&listed)],
    );
    assert!(!line.contains("swapped in behind"), "{line}");
}
