//! `index.yaml` parsing: streams a Helm repository index within the YAML budget and keeps
//! only the requested chart version's entry plus a short "not found" hint.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::quote;
use super::yaml::{null_as_default, yaml_options, yaml_problem};
use crate::limits::MAX_HELM_INDEX_BYTES;

/// How many chart names or versions a "not found" hint lists.
const HINT_LEN: usize = 20;

/// One version of the requested chart in `index.yaml`, with only the fields we use
/// (every other field is skipped without being kept).
#[derive(Debug, Deserialize)]
pub(super) struct IndexEntry {
    #[serde(deserialize_with = "null_as_default")]
    version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) urls: Vec<String>,
    #[serde(default)]
    pub(super) digest: Option<String>,
    #[serde(default)]
    pub(super) created: Option<String>,
}

/// What [`parse_index`] found for one chart and version.
#[derive(Debug, Default)]
pub(super) struct IndexLookup {
    /// The chart has an `entries` key.
    pub(super) chart_listed: bool,
    /// The first entry of the chart with the version asked for.
    pub(super) entry: Option<IndexEntry>,
    /// The alphabetically first [`HINT_LEN`] chart names (for the "not found" hint).
    pub(super) names: BTreeSet<String>,
    /// The chart's first [`HINT_LEN`] versions, in index order.
    pub(super) versions: Vec<String>,
}

/// Deserializes an index document into an [`IndexLookup`] for one chart and version:
/// the other charts' entries are skipped as they stream by.
#[derive(Clone, Copy)]
struct IndexQuery<'q> {
    chart: &'q str,
    version: &'q str,
}

impl<'de> DeserializeSeed<'de> for IndexQuery<'_> {
    type Value = IndexLookup;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<IndexLookup, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IndexQuery<'_> {
    type Value = IndexLookup;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Helm repository index (a mapping with `entries`)")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<IndexLookup, A::Error> {
        let mut lookup = IndexLookup::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" {
                map.next_value_seed(Entries {
                    query: self,
                    lookup: &mut lookup,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(lookup)
    }
}

/// The `entries` mapping (chart name → versions).
struct Entries<'q, 'l> {
    query: IndexQuery<'q>,
    lookup: &'l mut IndexLookup,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of chart names to lists of versions")
    }

    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            if name == self.query.chart {
                self.lookup.chart_listed = true;
                map.next_value_seed(Versions {
                    query: self.query,
                    lookup: &mut *self.lookup,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            let names = &mut self.lookup.names;
            names.insert(quote(&name));
            if names.len() > HINT_LEN {
                names.pop_last();
            }
        }
        Ok(())
    }
}

/// The list of versions of the requested chart.
struct Versions<'q, 'l> {
    query: IndexQuery<'q>,
    lookup: &'l mut IndexLookup,
}

impl<'de> DeserializeSeed<'de> for Versions<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Versions<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of chart versions")
    }

    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<IndexEntry>()? {
            if self.lookup.entry.is_none() && entry.version == self.query.version {
                self.lookup.entry = Some(entry);
            } else if self.lookup.versions.len() < HINT_LEN {
                self.lookup.versions.push(quote(&entry.version));
            }
        }
        Ok(())
    }
}

/// Looks `chart` at `version` up in an `index.yaml` read from `reader`, within the YAML
/// budget ([`yaml_options`]); the error is one line naming the limit hit.
pub(super) fn parse_index(
    reader: impl std::io::Read,
    chart: &str,
    version: &str,
) -> std::result::Result<IndexLookup, String> {
    let query = IndexQuery { chart, version };
    serde_saphyr::with_deserializer_from_reader_with_options(
        reader,
        yaml_options(MAX_HELM_INDEX_BYTES),
        |de| query.deserialize(de),
    )
    .map_err(|e| yaml_problem("index.yaml", "MAX_HELM_INDEX_BYTES", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lookup_keeps_only_the_requested_version() {
        let yaml = "apiVersion: v1\nentries:\n  other:\n    - version: 1.0.0\n      urls: [other-1.0.0.tgz]\n  demo:\n    - version: 0.2.0\n      urls: [demo-0.2.0.tgz]\n      digest: abc\n      created: \"2024-01-01T00:00:00Z\"\n    - version: 0.1.0\n      urls: [demo-0.1.0.tgz]\ngenerated: x\n";
        let found = parse_index(yaml.as_bytes(), "demo", "0.2.0").unwrap();
        let entry = found.entry.unwrap();
        assert_eq!(entry.urls, ["demo-0.2.0.tgz"]);
        assert_eq!(entry.digest.as_deref(), Some("abc"));
        assert_eq!(entry.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        let missing = parse_index(yaml.as_bytes(), "demo", "9.9.9").unwrap();
        assert!(missing.chart_listed && missing.entry.is_none());
        assert_eq!(missing.versions, ["0.2.0", "0.1.0"]);
        let absent = parse_index(yaml.as_bytes(), "nope", "1").unwrap();
        assert!(!absent.chart_listed);
        assert_eq!(
            absent.names.into_iter().collect::<Vec<_>>(),
            ["demo", "other"]
        );
    }

    #[test]
    fn index_refuses_aliases_depth_and_duplicates() {
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nentries: {}\n";
        let err = parse_index(bomb.as_bytes(), "demo", "1").unwrap_err();
        assert!(err.contains("aliases"), "{err}");
        let deep = format!(
            "junk: {}{}\nentries: {{}}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = parse_index(deep.as_bytes(), "demo", "1").unwrap_err();
        assert!(err.contains("MAX_YAML_DEPTH"), "{err}");
        let dup = "entries: {}\nentries: {}\n";
        assert!(parse_index(dup.as_bytes(), "demo", "1").is_err());
    }

    /// Property-based tests: whatever a repository sends, the index parser returns a value or an
    /// error, never panics; valid indexes look up exactly what they list.
    mod properties {
        use super::*;
        use crate::engine::helm_repo::yaml::strategies::yamlish;
        use proptest::prelude::*;

        /// A chart version: SemVer with optional pre-release and build metadata.
        fn version() -> impl Strategy<Value = String> {
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,6})?(\\+[a-z0-9]{1,5})?"
        }

        /// A sha256 hex digest, sometimes one that also reads as a float (`123…e456`).
        fn digest() -> impl Strategy<Value = String> {
            prop_oneof!["[0-9a-f]{64}", "[0-9]{60}e[0-9]{3}"]
        }

        /// `text` as a YAML scalar in one of Helm's or a human's styles.
        fn scalar(text: &str, style: u8) -> String {
            match style % 3 {
                0 => text.to_string(),
                1 => format!("'{text}'"),
                _ => format!("\"{text}\""),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn index_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_index(&bytes[..], "demo", "1.0.0");
            }

            #[test]
            fn index_parser_never_panics_on_yamlish_text(text in yamlish()) {
                let _ = parse_index(text.as_bytes(), "demo", "1.0.0");
            }
        }

        proptest! {
            // Each case parses an index of up to ~600 entries three times (debug builds
            // are slow at it): fewer cases than the default 256.
            #![proptest_config(ProptestConfig {
                cases: 64,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn generated_indexes_round_trip_the_version_lookup(
                charts in prop::collection::btree_map(
                    "[a-z][a-z0-9-]{0,15}",
                    prop::collection::vec((version(), digest(), any::<u8>()), 1..25),
                    1..25,
                ),
                pick in any::<prop::sample::Index>(),
                flow in any::<bool>(),
            ) {
                // Render the index as `helm repo index` would (block style), or in flow
                // style, with each version and digest in a random quoting style.
                let mut yaml = String::from("apiVersion: v1\nentries:\n");
                for (name, versions) in &charts {
                    yaml.push_str(&format!("  {name}:\n"));
                    for (v, d, style) in versions {
                        let url = format!("{name}-{v}.tgz");
                        if flow {
                            yaml.push_str(&format!(
                                "  - {{name: {name}, version: {}, digest: {}, urls: [{}]}}\n",
                                scalar(v, *style),
                                scalar(d, style / 3),
                                scalar(&url, style / 9)
                            ));
                        } else {
                            yaml.push_str(&format!(
                                "  - apiVersion: v2\n    created: \"2024-01-01T00:00:00Z\"\n    digest: {}\n    name: {name}\n    urls:\n    - {}\n    version: {}\n",
                                scalar(d, style / 3),
                                scalar(&url, style / 9),
                                scalar(v, *style)
                            ));
                        }
                    }
                }
                yaml.push_str("generated: \"2024-01-01T00:00:00Z\"\n");

                // A listed version: its first entry is found, with its URL and digest.
                let all: Vec<(&String, &(String, String, u8))> = charts
                    .iter()
                    .flat_map(|(name, versions)| versions.iter().map(move |v| (name, v)))
                    .collect();
                let (name, (v, _, _)) = all[pick.index(all.len())];
                let first = charts[name].iter().find(|(x, _, _)| x == v).unwrap();
                let found = parse_index(yaml.as_bytes(), name, v).unwrap();
                prop_assert!(found.chart_listed);
                let entry = found.entry.unwrap();
                prop_assert_eq!(&entry.version, v);
                prop_assert_eq!(entry.urls, vec![format!("{name}-{v}.tgz")]);
                prop_assert_eq!(entry.digest.as_deref(), Some(first.1.as_str()));
                if !flow {
                    prop_assert_eq!(entry.created.as_deref(), Some("2024-01-01T00:00:00Z"));
                }

                // An unlisted version: the chart's first versions as the hint.
                let missing = parse_index(yaml.as_bytes(), name, "not-a-version").unwrap();
                prop_assert!(missing.chart_listed && missing.entry.is_none());
                let expected: Vec<String> =
                    charts[name].iter().take(HINT_LEN).map(|(x, _, _)| x.clone()).collect();
                prop_assert_eq!(missing.versions, expected);

                // An unlisted chart: the alphabetically first names as the hint.
                let absent = parse_index(yaml.as_bytes(), "Not-A-Chart", "1.0.0").unwrap();
                prop_assert!(!absent.chart_listed && absent.entry.is_none());
                let expected: Vec<String> = charts.keys().take(HINT_LEN).cloned().collect();
                prop_assert_eq!(absent.names.into_iter().collect::<Vec<_>>(), expected);
            }
        }
    }
}
