//! Test fixtures, made only with independent tools (crane, oras, helm, skopeo), never
//! with the binary under test. Layer content is random and generated per test.

use super::cmd::Cmd;
use super::env::TestEnv;
use super::fileserver::FileServer;
use super::registry::Registry;
use rand::RngCore as _;
use std::path::PathBuf;

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// A tar file under the sandbox holding one file of `size` random bytes.
pub fn random_tar(env: &TestEnv, rel: &str, size: usize) -> PathBuf {
    let path = env.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut builder = tar::Builder::new(file);
    let data = random_bytes(size);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let name = format!(
        "{}.bin",
        std::path::Path::new(rel)
            .file_stem()
            .unwrap()
            .to_string_lossy()
    );
    builder.append_data(&mut header, name, &data[..]).unwrap();
    builder.finish().unwrap();
    path
}

/// Digests of the config and layers of an image manifest (in that order).
pub fn manifest_blobs(manifest: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).expect("manifest JSON");
    let mut out = Vec::new();
    if let Some(d) = v["config"]["digest"].as_str() {
        out.push(d.to_string());
    }
    for layer in v["layers"].as_array().into_iter().flatten() {
        out.push(layer["digest"].as_str().unwrap().to_string());
    }
    out
}

/// An image pushed by crane.
#[derive(Clone, Debug)]
pub struct Image {
    /// `repo:tag` within the registry.
    pub path: String,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub config: String,
    pub layers: Vec<String>,
    pub layer_sizes: Vec<u64>,
}

impl Image {
    pub fn repo(&self) -> &str {
        self.path.rsplit_once(':').unwrap().0
    }

    /// Config and layer digests.
    pub fn blobs(&self) -> Vec<String> {
        std::iter::once(self.config.clone())
            .chain(self.layers.iter().cloned())
            .collect()
    }

    /// Total bytes of config + layers + manifest.
    pub fn total_bytes(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&self.manifest).unwrap();
        v["config"]["size"].as_u64().unwrap()
            + self.layer_sizes.iter().sum::<u64>()
            + self.manifest.len() as u64
    }
}

/// Which manifest media types crane should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `application/vnd.oci.image.manifest.v1+json`
    Oci,
    /// `application/vnd.docker.distribution.manifest.v2+json` (Docker v2 schema 2)
    Docker,
}

/// Pushes an image with one layer per entry of `layer_sizes` (random tar content) with
/// `crane append`, optionally setting its platform with `crane mutate --set-platform`.
pub fn push_image(
    env: &TestEnv,
    reg: &Registry,
    path: &str,
    layer_sizes: &[usize],
    flavor: Flavor,
    platform: Option<&str>,
) -> Image {
    let reference = reg.reference(path);
    let mut cmd = env.crane(reg).arg("append");
    if flavor == Flavor::Oci {
        cmd = cmd.arg("--oci-empty-base");
    }
    let tag_safe = path.replace(['/', ':'], "_");
    for (i, size) in layer_sizes.iter().enumerate() {
        let tar = random_tar(env, &format!("layers/{tag_safe}-{i}.tar"), *size);
        cmd = cmd.arg("-f").arg(tar);
    }
    cmd.args(["-t", &reference]).ok();
    if let Some(platform) = platform {
        env.crane(reg)
            .args([
                "mutate",
                "--set-platform",
                platform,
                &reference,
                "-t",
                &reference,
            ])
            .ok();
    }
    describe_image(env, reg, path)
}

/// Reads back an image's manifest (crane) and describes it.
pub fn describe_image(env: &TestEnv, reg: &Registry, path: &str) -> Image {
    let manifest = env.crane_manifest(reg, path);
    let digest = super::sha256_digest(&manifest);
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    Image {
        path: path.to_string(),
        digest,
        config: v["config"]["digest"].as_str().unwrap().to_string(),
        layers: layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect(),
        layer_sizes: layers.iter().map(|l| l["size"].as_u64().unwrap()).collect(),
        manifest,
    }
}

/// A multi-platform index pushed by `crane index append`.
#[derive(Clone, Debug)]
pub struct Index {
    /// `repo:tag` of the index.
    pub path: String,
    pub digest: String,
    pub manifest: Vec<u8>,
    /// (platform, child image) per platform, in index order.
    pub children: Vec<(String, Image)>,
}

impl Index {
    pub fn child(&self, platform: &str) -> &Image {
        &self
            .children
            .iter()
            .find(|(p, _)| p == platform)
            .unwrap_or_else(|| panic!("no child for {platform}"))
            .1
    }
}

/// Pushes one image per platform (each with its own random layer of `layer_size` bytes)
/// to `<repo>:<tag>-<os>-<arch>[-<variant>]` and an index of them to `<repo>:<tag>`.
pub fn push_index(
    env: &TestEnv,
    reg: &Registry,
    repo: &str,
    tag: &str,
    platforms: &[&str],
    layer_size: usize,
    flavor: Flavor,
) -> Index {
    let mut children = Vec::new();
    let mut cmd = env.crane(reg).args(["index", "append"]);
    if flavor == Flavor::Docker {
        cmd = cmd.arg("--docker-empty-base");
    }
    for platform in platforms {
        let child_path = format!("{repo}:{tag}-{}", platform.replace('/', "-"));
        let image = push_image(env, reg, &child_path, &[layer_size], flavor, Some(platform));
        cmd = cmd
            .arg("-m")
            .arg(format!("{}@{}", reg.reference(repo), image.digest));
        children.push((platform.to_string(), image));
    }
    let path = format!("{repo}:{tag}");
    cmd.args(["-t", &reg.reference(&path)]).ok();
    let manifest = env.crane_manifest(reg, &path);
    Index {
        path,
        digest: super::sha256_digest(&manifest),
        manifest,
        children,
    }
}

/// `os/arch[/variant]` of each descriptor of an index, with its digest.
pub fn index_platforms(index: &[u8]) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(index).expect("index JSON");
    v["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            );
            if let Some(variant) = p["variant"].as_str() {
                platform = format!("{platform}/{variant}");
            }
            (platform, m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

/// A Helm chart made by `helm create` + `helm package`.
#[derive(Clone, Debug)]
pub struct Chart {
    pub name: String,
    pub version: String,
    pub tgz: PathBuf,
}

/// `helm create <name>` and `helm package --version <version> -d <out_dir>`.
pub fn helm_package(env: &TestEnv, name: &str, version: &str, out_dir: &str) -> Chart {
    let src_dir = env.path(&format!("chart-src/{name}-{version}"));
    std::fs::create_dir_all(&src_dir).unwrap();
    env.tool("helm").arg("create").arg(src_dir.join(name)).ok();
    let out = env.path(out_dir);
    std::fs::create_dir_all(&out).unwrap();
    env.tool("helm")
        .arg("package")
        .arg(src_dir.join(name))
        .args(["--version", version, "--app-version", version, "-d"])
        .arg(&out)
        .ok();
    let tgz = out.join(format!("{name}-{version}.tgz"));
    assert!(
        tgz.is_file(),
        "helm package did not write {}",
        tgz.display()
    );
    Chart {
        name: name.to_string(),
        version: version.to_string(),
        tgz,
    }
}

/// `helm push <tgz> oci://<reg>/<namespace>`; returns the manifest digest. The chart
/// lands at `<namespace>/<name>:<version>`.
pub fn helm_push(env: &TestEnv, reg: &Registry, chart: &Chart, namespace: &str) -> String {
    env.helm(reg)
        .arg("push")
        .arg(&chart.tgz)
        .arg(format!("oci://{}", reg.reference(namespace)))
        .args(TestEnv::helm_flags(reg))
        .ok();
    env.crane_digest(
        reg,
        &format!("{namespace}/{}:{}", chart.name, chart.version),
    )
}

/// A Helm HTTP repository: charts packaged into a directory, `helm repo index`, served by
/// a [`FileServer`].
pub struct HelmRepo {
    pub server: FileServer,
    pub dir: PathBuf,
    pub charts: Vec<Chart>,
}

impl HelmRepo {
    /// Base URL of the repository (`http://127.0.0.1:PORT/charts`).
    pub fn url(&self) -> String {
        format!("{}/charts", self.server.url())
    }
}

/// Builds and serves a Helm HTTP repository holding `charts` (name, version) under
/// `/charts/`, optionally behind basic auth.
pub fn helm_http_repo(
    env: &TestEnv,
    charts: &[(&str, &str)],
    basic_auth: Option<(&str, &str)>,
) -> HelmRepo {
    helm_repo(env, charts, basic_auth, false)
}

/// [`helm_http_repo`] served over https with a test CA (`repo.server.ca_file()`).
pub fn helm_https_repo(
    env: &TestEnv,
    charts: &[(&str, &str)],
    basic_auth: Option<(&str, &str)>,
) -> HelmRepo {
    helm_repo(env, charts, basic_auth, true)
}

fn helm_repo(
    env: &TestEnv,
    charts: &[(&str, &str)],
    basic_auth: Option<(&str, &str)>,
    tls: bool,
) -> HelmRepo {
    let root = env.path("helm-http");
    let dir = root.join("charts");
    std::fs::create_dir_all(&dir).unwrap();
    let charts: Vec<Chart> = charts
        .iter()
        .map(|(name, version)| helm_package(env, name, version, "helm-http/charts"))
        .collect();
    let server = if tls {
        FileServer::start_tls(&root, basic_auth)
    } else {
        FileServer::start(&root, basic_auth)
    };
    env.tool("helm")
        .args(["repo", "index"])
        .arg(&dir)
        .args(["--url", &format!("{}/charts", server.url())])
        .ok();
    assert!(dir.join("index.yaml").is_file());
    HelmRepo {
        server,
        dir,
        charts,
    }
}

/// `oras attach --artifact-type <type> <subject> <file>:<media type>`; returns the
/// referrer's manifest digest.
pub fn oras_attach(
    env: &TestEnv,
    reg: &Registry,
    subject: &str,
    artifact_type: &str,
    file_rel: &str,
    content: &[u8],
    media_type: &str,
) -> String {
    env.write(file_rel, content);
    let out = env
        .oras(reg)
        .args([
            "attach",
            "--artifact-type",
            artifact_type,
            "--format",
            "json",
        ])
        .args(TestEnv::oras_flags(reg))
        .arg(reg.reference(subject))
        .arg(format!("{file_rel}:{media_type}"))
        .ok();
    let v = out.json();
    v["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in oras attach output\n{out}"))
        .to_string()
}

/// `oras push <reg>/<path> <file>:<media type>...` (files relative to the sandbox work
/// dir); returns the manifest digest.
pub fn oras_push(
    env: &TestEnv,
    reg: &Registry,
    path: &str,
    artifact_type: Option<&str>,
    files: &[(&str, &str)],
) -> String {
    let mut cmd = env
        .oras(reg)
        .args(["push", "--format", "json"])
        .args(TestEnv::oras_flags(reg));
    if let Some(t) = artifact_type {
        cmd = cmd.args(["--artifact-type", t]);
    }
    cmd = cmd.arg(reg.reference(path));
    for (file, media_type) in files {
        cmd = cmd.arg(format!("{file}:{media_type}"));
    }
    let out = cmd.ok();
    out.json()["digest"].as_str().unwrap().to_string()
}

/// Artifact type of the SBOMs the referrer tests attach.
pub const SBOM: &str = "application/spdx+json";
/// Artifact type of the signatures the referrer tests attach.
pub const SIGNATURE: &str = "application/vnd.example.signature";

/// An image with an SBOM, a signature, and a signature of the SBOM, all by `oras attach`.
pub struct Signed {
    /// The image's digest; then its referrers' digests.
    pub image: String,
    pub sbom: String,
    pub signature: String,
    pub sbom_signature: String,
}

pub fn signed_image(env: &TestEnv, reg: &Registry, path: &str) -> Signed {
    let image = push_image(env, reg, path, &[4096, 2048], Flavor::Oci, None).digest;
    let repo = path.split(':').next().expect("repo:tag");
    let attach = |subject: &str, artifact_type: &str, name: &str, content: &[u8]| {
        oras_attach(
            env,
            reg,
            subject,
            artifact_type,
            name,
            content,
            "application/octet-stream",
        )
    };
    let sbom = attach(path, SBOM, "sbom.json", br#"{"spdxVersion": "SPDX-2.3"}"#);
    let signature = attach(path, SIGNATURE, "sig.bin", b"signed image");
    let sbom_signature = attach(
        &format!("{repo}@{sbom}"),
        SIGNATURE,
        "sbom-sig.bin",
        b"signed sbom",
    );
    Signed {
        image,
        sbom,
        signature,
        sbom_signature,
    }
}

/// `oras discover --format json`: the (digest, artifact type) of every referrer of
/// `reference`, at every level, as oras finds them.
pub fn oras_discover(env: &TestEnv, reg: &Registry, reference: &str) -> Vec<(String, String)> {
    let mut args = TestEnv::oras_flags(reg);
    args.push(reg.reference(reference));
    oras_discover_with(env.oras(reg), &args)
}

/// `<oras> discover --format json ARGS` (`oras` prepared for the registry; ARGS its
/// connection flags and the reference): (digest, artifact type) of every referrer, at
/// every level, sorted.
pub fn oras_discover_with(oras: Cmd, args: &[String]) -> Vec<(String, String)> {
    let out = oras.args(["discover", "--format", "json"]).args(args).ok();
    fn walk(v: &serde_json::Value, into: &mut Vec<(String, String)>) {
        for key in ["referrers", "manifests"] {
            for r in v[key].as_array().into_iter().flatten() {
                into.push((
                    r["digest"].as_str().unwrap_or_default().to_string(),
                    r["artifactType"].as_str().unwrap_or_default().to_string(),
                ));
                walk(r, into);
            }
        }
    }
    let mut found = Vec::new();
    walk(&out.json(), &mut found);
    found.sort();
    found
}
