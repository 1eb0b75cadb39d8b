//! Chart archive inspection: walks a chart `.tgz` entry by entry as Helm's loader would,
//! enforcing Helm's size limits, and reads the top-level `Chart.yaml`.

use std::io::Read as _;

use super::chart_yaml::{ChartMetadata, parse_chart_yaml};
use super::{QUOTE_LEN, human, one_line, quote};
use crate::engine::error::{EngineError, Result};
use crate::limits::{
    MAX_CHART_DECOMPRESSED_BYTES, MAX_CHART_ENTRIES, MAX_CHART_FILE_BYTES, MAX_CHART_YAML_BYTES,
    MAX_TAR_EXTENSION_BYTES,
};

/// Why a chart archive was refused; each message names the limit and what to fix.
#[derive(Debug, thiserror::Error)]
pub(super) enum ArchiveProblem {
    #[error("not a gzip-compressed tar archive ({0}); is this a chart made by `helm package`?")]
    Corrupt(String),
    #[error(
        "more than {MAX_CHART_ENTRIES} entries (limit MAX_CHART_ENTRIES); a chart holds far fewer files"
    )]
    TooManyEntries,
    #[error(
        "a tar extension header (PAX or GNU long name) of {} bytes, more than {} (limit MAX_TAR_EXTENSION_BYTES, as Go's archive/tar that Helm uses); repackage the chart with `helm package`",
        .size,
        human(MAX_TAR_EXTENSION_BYTES)
    )]
    ExtensionTooLarge { size: u64 },
    #[error(
        "file {path} decompresses to more than {} (limit MAX_CHART_FILE_BYTES, Helm's own limit: Helm refuses this chart too); shrink that file or leave it out of the chart",
        human(MAX_CHART_FILE_BYTES)
    )]
    FileTooLarge { path: String },
    #[error(
        "its files decompress to more than {} in total (limit MAX_CHART_DECOMPRESSED_BYTES, Helm's own limit: Helm refuses this chart too); make the chart smaller",
        human(MAX_CHART_DECOMPRESSED_BYTES)
    )]
    TotalTooLarge,
    #[error("{0}")]
    ChartYaml(String),
    #[error("no Chart.yaml at the top of the archive (CHART/Chart.yaml); is this a Helm chart?")]
    NoChartYaml,
}

/// Extension headers (PAX `x`, GNU `L`/`K`) seen before the entry they describe.
#[derive(Default)]
struct PendingExtensions {
    pax: bool,
    long_name: Option<Vec<u8>>,
    long_link: bool,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PendingExtensions {
    fn is_empty(&self) -> bool {
        !self.pax && !self.long_link && self.long_name.is_none()
    }

    /// Records one extension header's data (at most [`MAX_TAR_EXTENSION_BYTES`]).
    fn add(
        &mut self,
        kind: tar::EntryType,
        mut data: Vec<u8>,
    ) -> std::result::Result<(), ArchiveProblem> {
        let twice =
            || ArchiveProblem::Corrupt("two extension headers of one kind for one entry".into());
        if kind.is_pax_local_extensions() {
            if std::mem::replace(&mut self.pax, true) {
                return Err(twice());
            }
            for record in tar::PaxExtensions::new(&data) {
                let record = record.map_err(|e| ArchiveProblem::Corrupt(e.to_string()))?;
                match record.key_bytes() {
                    b"path" => self.pax_path = Some(record.value_bytes().to_vec()),
                    b"size" => {
                        let size = record
                            .value()
                            .ok()
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| {
                                ArchiveProblem::Corrupt("a bad PAX size record".into())
                            })?;
                        self.pax_size = Some(size);
                    }
                    _ => {}
                }
            }
        } else if kind.is_gnu_longname() {
            if self.long_name.is_some() {
                return Err(twice());
            }
            while data.last() == Some(&0) {
                data.pop();
            }
            self.long_name = Some(data);
        } else if std::mem::replace(&mut self.long_link, true) {
            return Err(twice());
        }
        Ok(())
    }
}

/// True for `CHART/Chart.yaml`, the chart's own metadata (not a subchart's).
fn is_top_level_chart_yaml(path: &str) -> bool {
    let path = std::path::Path::new(path);
    path.components().count() == 2 && path.file_name().is_some_and(|n| n == "Chart.yaml")
}

/// Adds `size` to the decompressed total, refusing it past [`MAX_CHART_DECOMPRESSED_BYTES`].
fn add_decompressed(total: &mut u64, size: u64) -> std::result::Result<(), ArchiveProblem> {
    *total = total.saturating_add(size);
    if *total > MAX_CHART_DECOMPRESSED_BYTES {
        return Err(ArchiveProblem::TotalTooLarge);
    }
    Ok(())
}

/// Walks a whole chart archive (`.tgz`) as Helm's loader would, streaming: every entry's
/// declared size is checked against Helm's limits before a byte of it is decompressed,
/// extension headers are checked before they are read, and only the top-level
/// `Chart.yaml` is read into memory (and parsed). Refuses what Helm would refuse for size.
pub(super) fn inspect_chart_archive(
    reader: impl std::io::Read,
) -> std::result::Result<ChartMetadata, ArchiveProblem> {
    let corrupt = |e: std::io::Error| ArchiveProblem::Corrupt(one_line(&e.to_string(), QUOTE_LEN));
    // Go's gzip reader (Helm's) reads every member of a multi-member gzip file.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(reader));
    // Raw: the tar crate would read every PAX and GNU long-name header fully into memory,
    // whatever its size; here each is checked against MAX_TAR_EXTENSION_BYTES first.
    let entries = archive.entries().map_err(corrupt)?.raw(true);
    let mut members = 0usize;
    let mut decompressed = 0u64;
    let mut pending = PendingExtensions::default();
    let mut metadata = None;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        let extension = kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink();
        if extension {
            if size > MAX_TAR_EXTENSION_BYTES {
                return Err(ArchiveProblem::ExtensionTooLarge { size });
            }
            add_decompressed(&mut decompressed, size)?;
            if kind.is_pax_global_extensions() {
                // Helm skips global headers; they count as entries here (they can repeat).
                members += 1;
                if members > MAX_CHART_ENTRIES {
                    return Err(ArchiveProblem::TooManyEntries);
                }
                continue;
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_TAR_EXTENSION_BYTES)
                .read_to_end(&mut data)
                .map_err(corrupt)?;
            pending.add(kind, data)?;
            continue;
        }
        members += 1;
        if members > MAX_CHART_ENTRIES {
            return Err(ArchiveProblem::TooManyEntries);
        }
        let ext = std::mem::take(&mut pending);
        if kind.is_gnu_sparse() {
            return Err(ArchiveProblem::Corrupt("a GNU sparse file".into()));
        }
        if ext.pax_size.is_some_and(|s| s != size) {
            // Raw reading follows the header's size; refuse rather than read it otherwise
            // than Helm (Go applies the PAX size).
            return Err(ArchiveProblem::Corrupt(
                "a PAX size record that overrides the tar header's size".into(),
            ));
        }
        let path_bytes = match ext.pax_path.or(ext.long_name) {
            Some(p) => p,
            None => entry.path_bytes().into_owned(),
        };
        let path = String::from_utf8_lossy(&path_bytes);
        if size > MAX_CHART_FILE_BYTES {
            return Err(ArchiveProblem::FileTooLarge { path: quote(&path) });
        }
        add_decompressed(&mut decompressed, size)?;
        if metadata.is_none() && kind.is_file() && is_top_level_chart_yaml(&path) {
            let name = quote(&path);
            if size > MAX_CHART_YAML_BYTES {
                return Err(ArchiveProblem::ChartYaml(format!(
                    "{name} is larger than {} (limit MAX_CHART_YAML_BYTES)",
                    human(MAX_CHART_YAML_BYTES)
                )));
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(MAX_CHART_YAML_BYTES)
                .read_to_end(&mut text)
                .map_err(corrupt)?;
            metadata = Some(parse_chart_yaml(&text, &name).map_err(ArchiveProblem::ChartYaml)?);
        }
    }
    if !pending.is_empty() {
        return Err(ArchiveProblem::Corrupt(
            "an extension header at the end, describing no entry".into(),
        ));
    }
    metadata.ok_or(ArchiveProblem::NoChartYaml)
}

/// Reads `<chart>/Chart.yaml` from a local chart archive, checking the whole archive
/// against Helm's size limits on the way (see [`crate::limits`]).
pub fn read_chart_yaml(path: &std::path::Path) -> Result<ChartMetadata> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path.display(), e))?;
    inspect_chart_archive(std::io::BufReader::new(file))
        .map_err(|problem| EngineError::InvalidInput(format!("{}: {problem}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn reads_chart_yaml_from_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-0.1.0.tgz");
        std::fs::write(
            &path,
            tgz(&[(
                "demo/Chart.yaml",
                b"apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            )]),
        )
        .unwrap();
        let m = read_chart_yaml(&path).unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "0.1.0"));
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(read_chart_yaml(&path).unwrap_err().is_input_error());
    }

    #[test]
    fn archive_limits_are_enforced_from_the_headers() {
        let chart = b"name: demo\nversion: 0.1.0\n";
        let big = vec![b'a'; (MAX_CHART_FILE_BYTES + 1) as usize];
        let err =
            inspect_chart_archive(&tgz(&[("demo/Chart.yaml", chart), ("demo/big", &big)])[..])
                .unwrap_err();
        assert!(matches!(err, ArchiveProblem::FileTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("MAX_CHART_FILE_BYTES"), "{err}");

        let err = inspect_chart_archive(&tgz(&[("demo/templates/x.yaml", b"x")])[..]).unwrap_err();
        assert!(matches!(err, ArchiveProblem::NoChartYaml), "{err}");

        let err = inspect_chart_archive(&tgz(&[("demo/Chart.yaml", b"a: &x [1]\nb: *x\n")])[..])
            .unwrap_err();
        assert!(err.to_string().contains("aliases"), "{err}");
    }

    /// Property-based tests: whatever a repository sends, the archive walk returns a value or an
    /// error, never panics.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn gzip(data: &[u8]) -> Vec<u8> {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).unwrap();
            gz.finish().unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn archive_walk_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
                let _ = inspect_chart_archive(&bytes[..]);
                // The same bytes as the tar stream inside a valid gzip.
                let _ = inspect_chart_archive(&gzip(&bytes)[..]);
            }

            #[test]
            fn archive_walk_never_panics_on_damaged_tars(
                damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            ) {
                let mut tar = Vec::new();
                {
                    let mut builder = tar::Builder::new(&mut tar);
                    let chart = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n";
                    for (path, data) in [
                        ("demo/Chart.yaml", &chart[..]),
                        ("demo/templates/a-rather-long-name-that-needs-a-gnu-long-name-header-because-it-is-over-one-hundred-bytes.yaml", b"x: 1\n"),
                        ("demo/values.yaml", b"a: b\n"),
                    ] {
                        let mut header = tar::Header::new_gnu();
                        header.set_size(data.len() as u64);
                        header.set_mode(0o644);
                        header.set_cksum();
                        builder.append_data(&mut header, path, data).unwrap();
                    }
                    builder.finish().unwrap();
                }
                for (at, byte) in damage {
                    let i = at.index(tar.len());
                    tar[i] = byte;
                }
                let _ = inspect_chart_archive(&gzip(&tar)[..]);
            }

        }
    }
}
