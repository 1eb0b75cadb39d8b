//! `Chart.yaml`: the chart metadata Helm reads, parsed within the YAML budget and
//! serialized in Helm's JSON field order (the OCI config of a chart).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::human;
use super::yaml::{null_as_default, yaml_options, yaml_problem};
use crate::limits::MAX_CHART_YAML_BYTES;

/// Chart metadata in Helm's JSON field order (the OCI config of a chart).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMetadata {
    /// Chart name.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) home: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(super) sources: Vec<String>,
    /// Chart version.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) description: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    keywords: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(super) maintainers: Vec<Maintainer>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    icon: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    api_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    condition: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    tags: String,
    /// A plain scalar such as `1.10` stays the text `1.10` (as Helm reads it), not a number.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    app_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    deprecated: bool,
    #[serde(
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    kube_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    dependencies: Vec<serde_json::Value>,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    chart_type: String,
}

/// One of the chart's maintainers.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct Maintainer {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) email: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    url: String,
}

/// `annotations`: string values, a `null` value read as the empty string.
fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// Parses a `Chart.yaml` (at most [`MAX_CHART_YAML_BYTES`]) within the YAML budget;
/// `name` is how the file is called in the error.
pub(super) fn parse_chart_yaml(
    bytes: &[u8],
    name: &str,
) -> std::result::Result<ChartMetadata, String> {
    let limit = usize::try_from(MAX_CHART_YAML_BYTES).unwrap_or(usize::MAX);
    if bytes.len() > limit {
        return Err(format!(
            "{name} is larger than {} (limit MAX_CHART_YAML_BYTES)",
            human(MAX_CHART_YAML_BYTES)
        ));
    }
    serde_saphyr::from_slice_with_options(bytes, yaml_options(limit))
        .map_err(|e| yaml_problem(name, "MAX_CHART_YAML_BYTES", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(yaml: &str) -> ChartMetadata {
        parse_chart_yaml(yaml.as_bytes(), "Chart.yaml").unwrap()
    }

    #[test]
    fn chart_metadata_json_follows_helm_field_order() {
        let yaml = "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: 1.16\ndescription: A chart\ntype: application\n";
        let m = metadata(yaml);
        let json = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"name":"demo","version":"0.1.0","description":"A chart","apiVersion":"v2","appVersion":"1.16","type":"application"}"#
        );
    }

    #[test]
    fn chart_yaml_scalars_read_as_helm_reads_them() {
        let m = metadata(
            "name: demo\nversion: 1.0\nappVersion: 1.10\nicon:\nkeywords:\ndeprecated: true\n\
             annotations:\n  a: 1\n  b:\nmaintainers:\n  - name: Ann\n    email: ann@example.com\n",
        );
        assert_eq!(m.version, "1.0");
        assert_eq!(m.app_version, "1.10");
        assert_eq!(m.icon, "");
        assert!(m.keywords.is_empty());
        assert!(m.deprecated);
        assert_eq!(m.annotations["a"], "1");
        assert_eq!(m.annotations["b"], "");
        assert_eq!(m.maintainers[0].email, "ann@example.com");
    }

    /// Property-based tests: whatever a repository sends, the Chart.yaml parser returns a value
    /// or an error, never panics.
    mod properties {
        use super::*;
        use crate::engine::helm_repo::yaml::strategies::yamlish;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn chart_yaml_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_chart_yaml(&bytes, "Chart.yaml");
            }

            #[test]
            fn chart_yaml_parser_never_panics_on_yamlish_text(text in yamlish()) {
                let _ = parse_chart_yaml(text.as_bytes(), "Chart.yaml");
            }
        }
    }
}
