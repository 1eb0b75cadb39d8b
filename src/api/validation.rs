//! Validation of our objects by the CRDs' own schema, for objects that never pass an API
//! server (the CLI's `transfer -f`): the OpenAPI schema (types, enums, patterns, lengths,
//! required fields, unknown fields as `kubectl apply`'s strict field validation refuses
//! them, `x-kubernetes-list-type: set`) after the schema's defaults, then the
//! `x-kubernetes-validations` CEL rules, as the API server does. The CRD generated from
//! the Rust types ([`super::crds`]) is the one source of truth: there is no second copy of
//! any rule. Messages follow the API server's (`spec.x: Required value`, `spec.y: Invalid
//! value: ...`), and a pattern failure adds the field's documentation (what it must be).
//!
//! The schemas are compiled once per process, on first use.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Value, json};

/// A rule of the CRD schema that an object breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Path of the offending field, e.g. `spec.destination.artifactStore.version` (empty
    /// for the object itself).
    pub field: String,
    /// What is wrong, in the API server's words, and what the field must be.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// Starts the message of a CEL rule that could not be compiled or evaluated offline.
pub const UNEVALUABLE: &str = "cannot evaluate the CEL rule";

/// One kind's schema, as the API server holds it.
struct KindSchema {
    /// The `openAPIV3Schema` of the CRD (what defaults and CEL rules are read from).
    schema: Value,
    /// The same, with the fields the API server adds and strict unknown-field checks.
    validator: Option<jsonschema::Validator>,
}

static KINDS: LazyLock<BTreeMap<String, KindSchema>> = LazyLock::new(|| {
    super::crds()
        .into_iter()
        .filter_map(|crd| {
            let version = crd.spec.versions.first()?;
            let schema =
                serde_json::to_value(version.schema.as_ref()?.open_api_v3_schema.as_ref()?).ok()?;
            let mut strict = schema.clone();
            if let Some(props) = strict.get_mut("properties").and_then(Value::as_object_mut) {
                // The API server adds these to every CRD's schema.
                props.insert("apiVersion".into(), json!({"type": "string"}));
                props.insert("kind".into(), json!({"type": "string"}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            forbid_unknown_fields(&mut strict);
            let validator = jsonschema::validator_for(&strict).ok();
            Some((
                crd.spec.names.kind.clone(),
                KindSchema { schema, validator },
            ))
        })
        .collect()
});

/// Validates `object` (any of our kinds, as JSON) as the API server would on create.
/// Returns every broken rule.
pub fn validate_object(object: &Value) -> Result<(), Vec<ValidationError>> {
    let errors = problems(object);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Validates `spec` as the spec of an object of `kind` (named `validated`).
pub fn validate_spec(kind: &str, spec: &impl serde::Serialize) -> Result<(), Vec<ValidationError>> {
    let spec = serde_json::to_value(spec).map_err(|e| vec![error("spec", e.to_string())])?;
    validate_object(&json!({
        "apiVersion": super::API_VERSION,
        "kind": kind,
        "metadata": {"name": "validated", "namespace": "default"},
        "spec": spec,
    }))
}

/// The object with the schema's defaults applied (what the API server stores).
pub fn with_defaults(object: &Value) -> Value {
    match kind_of(object) {
        Some(kind) => kube_cel::apply_defaults(&kind.schema, object),
        None => object.clone(),
    }
}

fn kind_of(object: &Value) -> Option<&'static KindSchema> {
    KINDS.get(object.get("kind")?.as_str()?)
}

fn problems(object: &Value) -> Vec<ValidationError> {
    let kind_name = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if object.get("apiVersion").and_then(Value::as_str) != Some(super::API_VERSION) {
        return vec![error(
            "apiVersion",
            format!("Unsupported value: must be {:?}", super::API_VERSION),
        )];
    }
    let Some(kind) = kind_of(object) else {
        return vec![error(
            "kind",
            format!(
                "Unsupported value: {kind_name:?} is not a kind of {}",
                super::API_VERSION
            ),
        )];
    };
    let Some(validator) = &kind.validator else {
        return vec![error(
            "",
            format!("the {kind_name} schema does not compile"),
        )];
    };
    let defaulted = kube_cel::apply_defaults(&kind.schema, object);
    let mut errors = Vec::new();
    let mut blocking = false;
    for e in validator.iter_errors(&defaulted) {
        let path = dotted(e.instance_path().segments());
        use jsonschema::error::ValidationErrorKind as K;
        match e.kind() {
            K::Required { property } => errors.push(error(
                &join(&path, property.as_str().unwrap_or("?")),
                "Required value",
            )),
            K::AdditionalProperties { unexpected } => {
                for u in unexpected {
                    errors.push(error("", format!("unknown field {:?}", join(&path, u))));
                }
            }
            K::Enum { options } => {
                blocking = true;
                let supported = options
                    .as_array()
                    .map(|o| {
                        o.iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| options.to_string());
                errors.push(error(
                    &path,
                    format!(
                        "Unsupported value: {}: supported values: {supported}",
                        e.instance()
                    ),
                ));
            }
            K::Type { .. } => {
                blocking = true;
                errors.push(error(
                    &path,
                    format!("Invalid value: {}: {e}", e.instance()),
                ));
            }
            K::Pattern { pattern } => {
                let what = description_at(&kind.schema, &path)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                errors.push(error(
                    &path,
                    format!(
                        "Invalid value: {}: should match '{pattern}'{what}",
                        e.instance()
                    ),
                ));
            }
            _ => errors.push(error(&path, format!("Invalid value: {e}"))),
        }
    }
    set_duplicates(&kind.schema, &defaulted, "", &mut errors);
    if !blocking
        && let Err(cel) = kube_cel::Validator::new().validate(&kind.schema, &defaulted, None)
    {
        for e in cel.into_vec() {
            // A runtime error (e.g. "no such key" when a required field is missing) also
            // refuses the object, as on the API server. A rule that cannot be compiled here
            // refuses it too, saying so (tests keep every rule evaluable).
            let message = match e.kind {
                kube_cel::ErrorKind::ValidationFailure
                | kube_cel::ErrorKind::InvalidResult
                | kube_cel::ErrorKind::EvaluationError => format!("Invalid value: {}", e.message),
                _ => format!("{UNEVALUABLE} {:?}: {}", e.rule, e.message),
            };
            errors.push(error(&e.field_path, message));
        }
    }
    errors
}

fn error(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// `additionalProperties: false` on every object schema with `properties`: what strict
/// field validation (`kubectl apply`'s default) does with unknown fields.
fn forbid_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !map.contains_key("x-kubernetes-preserve-unknown-fields")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(forbid_unknown_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_unknown_fields),
        _ => {}
    }
}

/// `spec.platforms[0]` from a JSON location.
fn dotted<'a>(segments: impl Iterator<Item = jsonschema::paths::LocationSegment<'a>>) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            jsonschema::paths::LocationSegment::Property(p) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&p);
            }
            jsonschema::paths::LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The first sentence of the documentation of the field at `path` (`spec.a[0].b`).
fn description_at(schema: &Value, path: &str) -> Option<String> {
    let mut node = schema;
    for part in path.split('.') {
        let (name, indexed) = match part.find('[') {
            Some(i) => (&part[..i], true),
            None => (part, false),
        };
        node = node.get("properties")?.get(name)?;
        if indexed {
            node = node.get("items")?;
        }
    }
    let text = node.get("description")?.as_str()?;
    let first = text
        .split(". ")
        .next()
        .unwrap_or(text)
        .trim_end_matches('.');
    Some(first.replace('\n', " "))
}

/// Duplicates in `x-kubernetes-list-type: set` lists (the API server refuses them).
fn set_duplicates(schema: &Value, value: &Value, path: &str, out: &mut Vec<ValidationError>) {
    match value {
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in obj {
                    if let Some(s) = props.get(k) {
                        set_duplicates(s, v, &join(path, k), out);
                    }
                }
            }
        }
        Value::Array(items) => {
            if schema.get("x-kubernetes-list-type") == Some(&json!("set")) {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    if !seen.insert(item.to_string()) {
                        out.push(error(
                            &format!("{path}[{i}]"),
                            format!("Duplicate value: {item}"),
                        ));
                    }
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    set_duplicates(s, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(spec: Value) -> Value {
        json!({"apiVersion": super::super::API_VERSION, "kind": "ArtifactTransfer",
               "metadata": {"name": "t", "namespace": "ns"}, "spec": spec})
    }

    fn push_spec() -> Value {
        json!({
            "source": {"registry": {"image": "registry.example/contoso/cnf:1.0.0"}},
            "destination": {"artifactStore": {
                "storeRef": {"kind": "ClusterArtifactStore", "name": "contoso"},
                "manifest": "m", "artifact": "contoso-cnf", "version": "1.0.0"}}
        })
    }

    fn messages(v: &Value) -> String {
        match validate_object(v) {
            Ok(()) => String::new(),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn every_kind_compiles() {
        assert_eq!(KINDS.len(), 3);
        assert!(KINDS.values().all(|k| k.validator.is_some()));
    }

    #[test]
    fn a_valid_push_passes() {
        assert_eq!(validate_object(&transfer(push_spec())), Ok(()));
    }

    #[test]
    fn a_pattern_failure_names_the_field_and_what_it_must_be() {
        let mut spec = push_spec();
        spec["destination"]["artifactStore"]["version"] = json!("v1");
        let text = messages(&transfer(spec));
        assert!(
            text.contains("spec.destination.artifactStore.version: Invalid value"),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_refused() {
        let mut spec = push_spec();
        spec["destination"]["artifactStore"]["versoin"] = json!("1.0.0");
        let text = messages(&transfer(spec));
        assert!(
            text.contains("unknown field \"spec.destination.artifactStore.versoin\""),
            "{text}"
        );
        let text = messages(&transfer(json!({"source": push_spec()["source"]})));
        assert!(text.contains("spec.destination: Required value"), "{text}");
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let spec = json!({
            "source": {"registry": {"image": "registry.example/contoso/cnf:1.0.0"}},
            "destination": {"registry": {"image": "registry.example/contoso/cnf:1.0.0"}}
        });
        let text = messages(&transfer(spec));
        assert!(text.contains("Invalid value"), "{text}");
    }

    #[test]
    fn typed_specs_validate_as_they_serialise() {
        let spec: crate::api::ArtifactTransferSpec =
            serde_json::from_value(push_spec()).expect("a spec");
        assert_eq!(spec.validate(), Ok(()));
        let store: crate::api::ArtifactStoreSpec = serde_json::from_value(json!({
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "resourceGroup": "rg", "publisher": "p", "artifactStore": "s",
            "identity": {"type": "ClientSecret", "secretRef": {"name": "sp"}}
        }))
        .expect("a store spec");
        assert_eq!(store.validate(), Ok(()));
        let mut bad = store.clone();
        bad.subscription_id = "not-a-guid".into();
        let errors = bad.validate().expect_err("refused");
        assert_eq!(errors[0].field, "spec.subscriptionId", "{errors:?}");
    }

    #[test]
    fn other_kinds_and_versions_are_refused() {
        let mut v = transfer(push_spec());
        v["apiVersion"] = json!("artifacts.aosm.dev/v9");
        assert!(messages(&v).starts_with("apiVersion: Unsupported value"));
        let mut v = transfer(push_spec());
        v["kind"] = json!("Pod");
        assert!(messages(&v).starts_with("kind: Unsupported value"));
    }
}
