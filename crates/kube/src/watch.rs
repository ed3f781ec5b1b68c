//! The store's watch: per kind, one list (all namespaces) and a watch from its resource
//! version, mapped onto the store's [`Event`]s. The API's `ADDED`/`MODIFIED`/`DELETED` keep
//! their meaning (kube-runtime's `watcher` folds the first two into one, so the raw watch
//! is used). A watch that ends is resumed from the last version seen; one that expired
//! (`410 Gone`) or failed is replaced by a new list, whose difference from what was known
//! is reported as events (added, changed, gone).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use obol_control::store::{Event, ObjectKey, StoreError};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::convert::{api_resource, describe};

/// How long to wait before listing again after a failure.
const RETRY: Duration = Duration::from_secs(2);

/// The watch tasks, aborted on drop.
#[derive(Debug)]
pub(crate) struct Watches(Vec<JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Watches {
    /// Starts one watch per kind and waits for each one's first list.
    pub(crate) async fn start(
        client: &Client,
        events: &broadcast::Sender<Event>,
    ) -> Result<Self, StoreError> {
        let mut tasks = Vec::new();
        let mut ready = Vec::new();
        for (kind, _) in obol_control::crd::KINDS {
            let resource = api_resource(kind)?;
            let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
            let (listed, listed_rx) = oneshot::channel();
            let watch = KindWatch {
                kind,
                api,
                events: events.clone(),
                known: BTreeMap::new(),
            };
            tasks.push(tokio::spawn(watch.run(listed)));
            ready.push(listed_rx);
        }
        let watches = Self(tasks);
        for listed in ready {
            listed
                .await
                .map_err(|_| StoreError::Backend("Kubernetes watch: task ended".to_owned()))??;
        }
        Ok(watches)
    }
}

/// `(namespace, name)` → resource version of every object of the kind.
type Known = BTreeMap<(String, String), String>;

struct KindWatch {
    kind: &'static str,
    api: Api<DynamicObject>,
    events: broadcast::Sender<Event>,
    known: Known,
}

fn identity(object: &DynamicObject) -> ((String, String), String) {
    let meta = &object.metadata;
    (
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        ),
        meta.resource_version.clone().unwrap_or_default(),
    )
}

impl KindWatch {
    fn emit(&self, make: fn(ObjectKey) -> Event, (namespace, name): (String, String)) {
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(make(ObjectKey {
            kind: self.kind.to_owned(),
            namespace,
            name,
        }));
    }

    /// Lists, reports the difference from what was known (nothing the first time), and
    /// returns the list's resource version.
    async fn relist(&mut self, first: bool) -> Result<String, StoreError> {
        let list = self.api.list(&ListParams::default()).await.map_err(|e| {
            StoreError::Backend(describe(
                &format!("Kubernetes API: list {} in all namespaces", self.kind),
                &e,
            ))
        })?;
        let now: Known = list.items.iter().map(identity).collect();
        if !first {
            let previous = std::mem::take(&mut self.known);
            for (key, version) in &now {
                match previous.get(key) {
                    None => self.emit(Event::Added, key.clone()),
                    Some(old) if old != version => self.emit(Event::Modified, key.clone()),
                    Some(_) => {}
                }
            }
            for key in previous.keys().filter(|k| !now.contains_key(*k)) {
                self.emit(Event::Deleted, key.clone());
            }
        }
        self.known = now;
        Ok(list.metadata.resource_version.unwrap_or_default())
    }

    async fn run(mut self, listed: oneshot::Sender<Result<(), StoreError>>) {
        let mut version = match self.relist(true).await {
            Ok(version) => version,
            Err(error) => {
                let _ = listed.send(Err(error));
                return;
            }
        };
        let _ = listed.send(Ok(()));
        loop {
            match self.follow(&mut version).await {
                // Ended (the server's timeout): resume from the last version.
                Ok(()) => continue,
                Err(error) => {
                    tracing::warn!(kind = self.kind, %error, "Kubernetes watch lost; listing again");
                    loop {
                        tokio::time::sleep(RETRY).await;
                        match self.relist(false).await {
                            Ok(listed) => {
                                version = listed;
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(kind = self.kind, %error, "Kubernetes list failed")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Follows one watch request from `version`, updating it; `Err` when a new list is needed.
    async fn follow(&mut self, version: &mut String) -> Result<(), String> {
        let params = WatchParams::default().timeout(290);
        let stream = self
            .api
            .watch(&params, version)
            .await
            .map_err(|e| describe("watch", &e))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| describe("watch stream", &e))?;
            let (make, object): (fn(ObjectKey) -> Event, DynamicObject) = match event {
                WatchEvent::Added(object) => (Event::Added, object),
                WatchEvent::Modified(object) => (Event::Modified, object),
                WatchEvent::Deleted(object) => (Event::Deleted, object),
                WatchEvent::Bookmark(bookmark) => {
                    *version = bookmark.metadata.resource_version;
                    continue;
                }
                // `410 Gone` (the version expired) or another failure: list again.
                WatchEvent::Error(status) => {
                    return Err(format!(
                        "watch: HTTP {} {}: {}",
                        status.code, status.reason, status.message
                    ));
                }
            };
            let (key, object_version) = identity(&object);
            if !object_version.is_empty() {
                version.clone_from(&object_version);
            }
            let event = make(ObjectKey {
                kind: self.kind.to_owned(),
                namespace: key.0.clone(),
                name: key.1.clone(),
            });
            if matches!(event, Event::Deleted(_)) {
                self.known.remove(&key);
            } else {
                self.known.insert(key, object_version);
            }
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        Ok(())
    }
}
