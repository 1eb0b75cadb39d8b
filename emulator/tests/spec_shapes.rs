//! The emulator's answers have the shapes of Microsoft's official examples of the
//! `Microsoft.HybridNetwork` specification (`tests/fixtures/aosm-spec/` of the root
//! package, copied verbatim): for each stable api-version, every field an example's answer
//! carries, the emulator's answer carries too, and the emulator adds none beyond the
//! specification's resource envelope (`systemData`, `tags`) and `provisioningState`.
//! Headers of the long-running operations (201 + `Azure-AsyncOperation`, 202 + only
//! `Location` in the examples' URL form, then 204 or the final body) are compared as well.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::*;

/// The fields of `v` as paths (`properties.artifacts[].artifactName`), objects and arrays
/// included.
fn fields(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    out.insert(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

fn example(version: &str, name: &str) -> Option<Value> {
    let path = format!(
        "{}/../tests/fixtures/aosm-spec/{version}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("an example is JSON"))
}

/// Asserts that `ours` has every field of `theirs` and nothing beyond it but `extra`.
#[track_caller]
fn same_shape(what: &str, ours: &Value, theirs: &Value, extra: &[&str]) {
    let (ours_f, theirs_f) = (fields(ours), fields(theirs));
    let missing: Vec<&String> = theirs_f.difference(&ours_f).collect();
    assert!(
        missing.is_empty(),
        "{what}: the emulator lacks {missing:?}\nours: {ours}"
    );
    let added: Vec<&String> = ours_f
        .difference(&theirs_f)
        .filter(|f| {
            !extra
                .iter()
                .any(|e| *f == e || f.starts_with(&format!("{e}.")))
        })
        .collect();
    assert!(
        added.is_empty(),
        "{what}: the emulator adds {added:?}\nours: {ours}"
    );
}

/// The path of an operation URL with its id replaced, to compare forms.
fn operation_form(url: &str) -> String {
    let (before, after) = url
        .split_once("/operationStatuses/")
        .expect("an operationStatuses URL");
    let path = before
        .split_once("/providers/")
        .map(|(_, p)| p)
        .unwrap_or(before);
    let (id, query) = after.split_once('?').unwrap_or((after, ""));
    let (uuid, tail) = id.split_once('*').expect("<uuid>*<hex>");
    let location = path.rsplit('/').next().unwrap_or_default();
    format!(
        "/providers/{}/operationStatuses/<{}>*<{}>?{query}",
        path.replace(location, "<LOC>").to_ascii_lowercase(),
        uuid.len(),
        tail.len()
    )
}

#[test]
fn answers_have_the_official_examples_shapes() {
    let emu = Emulator::start(&["--no-registry"]);
    let t = emu.arm_token();
    let (p, s) = ("contoso", "store");
    for version in [V2023, V2024, V2025] {
        let m = format!("manifest-{version}");
        // Store: PUT (201 + Azure-AsyncOperation), then GET.
        let store_example = example(version, "ArtifactStoreGet")
            .or_else(|| example(version, "ArtifactStoreCreate"))
            .expect("a store example");
        let (st, _, _) = emu.arm_with(
            Some(&t),
            Method::PUT,
            &publisher_id(p),
            version,
            Some(json!({"location": "eastus", "properties": {"scope": "Private"}})),
        );
        assert!(st == 200 || st == 201);
        let store = store_id(p, &format!("{s}-{version}"));
        let (st, h, _) = emu.arm_with(
            Some(&t),
            Method::PUT,
            &store,
            version,
            Some(json!({"location": "eastus", "properties": {"storeType": "AzureContainerRegistry", "replicationStrategy": "SingleReplication"}})),
        );
        assert_eq!(st, 201);
        assert!(h.contains_key("azure-asyncoperation"), "{h:?}");
        let (_, _, ours) = emu.arm_with(Some(&t), Method::GET, &store, version, None);
        same_shape(
            &format!("{version} artifact store"),
            &ours,
            &store_example["responses"]["200"]["body"],
            &["systemData", "properties.provisioningState"],
        );

        // Manifest: GET.
        let manifest_path = format!("{store}/artifactManifests/{m}");
        let (st, _, _) = emu.arm_with(
            Some(&t),
            Method::PUT,
            &manifest_path,
            version,
            Some(json!({"location": "eastus", "properties": {"artifacts": [
                {"artifactName": "fed-rbac", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}]}})),
        );
        assert_eq!(st, 201);
        let (_, _, ours) = emu.arm_with(Some(&t), Method::GET, &manifest_path, version, None);
        same_shape(
            &format!("{version} artifact manifest"),
            &ours,
            &example(version, "ArtifactManifestGet").unwrap()["responses"]["200"]["body"],
            &["systemData"],
        );

        // listCredential: the same fields, and no others.
        let (_, _, ours) = emu.arm_with(
            Some(&t),
            Method::POST,
            &format!("{manifest_path}/listCredential"),
            version,
            None,
        );
        let credential_example = example(version, "ArtifactManifestListCredential")
            .or_else(|| example(V2024, "ArtifactManifestListCredential"))
            .unwrap();
        same_shape(
            &format!("{version} listCredential"),
            &ours,
            &credential_example["responses"]["200"]["body"],
            &[],
        );

        // updateState: 202 with only a Location in the example's form, polled to the
        // example's final body.
        let update = example(version, "ArtifactManifestUpdateState").unwrap();
        let (st, h, _) = emu.arm_with(
            Some(&t),
            Method::POST,
            &format!("{manifest_path}/updateState"),
            version,
            Some(json!({"artifactManifestState": "Uploaded"})),
        );
        assert_eq!(st, 202);
        assert!(!h.contains_key("azure-asyncoperation"));
        let location = h["location"].to_str().unwrap().to_string();
        let theirs = update["responses"]["202"]["headers"]["location"]
            .as_str()
            .unwrap();
        assert_eq!(operation_form(&location), operation_form(theirs));
        let (st, h, _) = emu.arm_with(Some(&t), Method::GET, &location, "", None);
        assert_eq!(st, 202, "still running (one poll configured)");
        assert!(
            !h.contains_key("location"),
            "no new Location: keep polling the same URL"
        );
        let (st, _, ours) = emu.arm_with(Some(&t), Method::GET, &location, "", None);
        assert_eq!(st, 200);
        same_shape(
            &format!("{version} updateState result"),
            &ours,
            &update["responses"]["200"]["body"],
            &[],
        );
    }

    // DELETE: 202 with only a Location of the example's form, then 204; absent: 204.
    let delete = example(V2025, "ArtifactManifestDelete").unwrap();
    let theirs = delete["responses"]["202"]["headers"]["location"]
        .as_str()
        .unwrap();
    let manifest_path = format!(
        "{}/artifactManifests/manifest-{V2025}",
        store_id(p, &format!("{s}-{V2025}"))
    );
    let (st, h, _) = emu.arm_with(Some(&t), Method::DELETE, &manifest_path, V2025, None);
    assert_eq!(st, 202);
    let location = h["location"].to_str().unwrap().to_string();
    assert_eq!(operation_form(&location), operation_form(theirs));
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &location, "", None).0,
        202
    );
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &location, "", None).0,
        204
    );
    assert_eq!(
        emu.arm_with(Some(&t), Method::DELETE, &manifest_path, V2025, None)
            .0,
        204
    );
}
