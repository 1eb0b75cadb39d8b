//! A record of every version of chosen objects, as the API server's watch delivers them,
//! in resourceVersion order: what a test asserts "A happened before B" with, and how it
//! waits for a state (in memory, no polling of the API server).
//!
//! Kubernetes says to treat resourceVersions as opaque; kube-apiserver on one etcd hands
//! out etcd's revision, one counter for the whole cluster, so within a test cluster they
//! order every write. The tests compare them only against their own cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::kube::KubeCluster;
use super::rt;

/// One version of one object.
#[derive(Clone, Debug)]
pub struct Seen {
    /// etcd's revision of this version.
    pub rv: u64,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object as JSON.
    pub object: Value,
}

impl Seen {
    /// The condition `type_` of `status.conditions`, if any.
    pub fn condition(&self, type_: &str) -> Option<&Value> {
        self.object["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
    }

    /// The `status` of condition `type_` ("True", "False", "Unknown"), or "" when absent.
    pub fn condition_status(&self, type_: &str) -> &str {
        self.condition(type_)
            .and_then(|c| c["status"].as_str())
            .unwrap_or_default()
    }

    /// Condition `type_` is True.
    pub fn is(&self, type_: &str) -> bool {
        self.condition_status(type_) == "True"
    }

    /// A one-line summary: `rv kind/name gen=G observed=O Ready=S (reason: message)`.
    pub fn line(&self) -> String {
        let ready = self.condition("Ready");
        format!(
            "rv={} {}/{} generation={} observedGeneration={} Ready={} {}",
            self.rv,
            self.kind,
            self.name,
            self.object["metadata"]["generation"],
            self.object["status"]["observedGeneration"],
            ready.and_then(|c| c["status"].as_str()).unwrap_or("-"),
            ready
                .map(|c| format!("({}: {})", c["reason"], c["message"]))
                .unwrap_or_default()
        )
    }
}

/// Watches some kinds from creation; stops on drop.
pub struct Timeline {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// A kind to watch: group, version, kind, plural, and the namespace (None: all).
pub struct Watched<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespace: Option<&'a str>,
}

impl Timeline {
    /// Starts one watch per kind and returns once each has listed what exists.
    pub fn start(cluster: &KubeCluster, kinds: &[Watched<'_>]) -> Timeline {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let mut tasks = Vec::new();
        let mut ready = Vec::new();
        for w in kinds {
            let ar = ApiResource {
                group: w.group.to_string(),
                version: w.version.to_string(),
                api_version: if w.group.is_empty() {
                    w.version.to_string()
                } else {
                    format!("{}/{}", w.group, w.version)
                },
                kind: w.kind.to_string(),
                plural: w.plural.to_string(),
            };
            let namespace = w.namespace.map(str::to_string);
            let seen = seen.clone();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            ready.push(rx);
            let client = rt::block_on(cluster.client());
            tasks.push(rt::runtime().spawn(async move {
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(client, ns, &ar),
                    None => Api::all_with(client, &ar),
                };
                let mut events = watcher(api, watcher::Config::default()).boxed();
                let mut tx = Some(tx);
                while let Some(event) = events.next().await {
                    let obj = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        // Deletions and watch errors (the watcher retries) are not states.
                        Ok(_) | Err(_) => continue,
                    };
                    let rv = obj
                        .metadata
                        .resource_version
                        .as_deref()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_default();
                    let entry = Seen {
                        rv,
                        kind: ar.kind.clone(),
                        namespace: obj.metadata.namespace.clone(),
                        name: obj.metadata.name.clone().unwrap_or_default(),
                        object: serde_json::to_value(&obj).unwrap_or_default(),
                    };
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                }
            }));
        }
        for rx in ready {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("a watch of the test cluster listed its objects");
        }
        Timeline { seen, tasks }
    }

    /// Every version seen so far, in resourceVersion order.
    pub fn all(&self) -> Vec<Seen> {
        let mut all = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        all.sort_by_key(|s| s.rv);
        all.dedup_by_key(|s| (s.rv, s.kind.clone(), s.name.clone()));
        all
    }

    /// The first version (lowest resourceVersion) of `kind`/`name` for which `pred` holds.
    pub fn first(&self, kind: &str, name: &str, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        self.all()
            .into_iter()
            .find(|s| s.kind == kind && s.name == name && pred(s))
    }

    /// The latest version of `kind`/`name` seen.
    pub fn latest(&self, kind: &str, name: &str) -> Option<Seen> {
        self.all()
            .into_iter()
            .rev()
            .find(|s| s.kind == kind && s.name == name)
    }

    /// Every version of the objects named, one line each (for failure messages and notes).
    pub fn story(&self, names: &[&str]) -> String {
        self.all()
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .map(Seen::line)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
