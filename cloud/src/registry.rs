//! The Vizier registry: clusters register with a deploy key and the uid of their kube-system
//! namespace, get a stable cluster id, then send heartbeats (Vizier phase, node count, version).
//! [`DeployKeys`] and [`Registry`] are the pure core; [`RegistryService`] is the gRPC service.
//! State is in memory: a restarted cloud forgets its clusters, and connectors register again
//! (their cluster id changes only if the cloud restarted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use crate::proto::vizier_registry_server::{VizierRegistry, VizierRegistryServer};
use crate::proto::{
    ClusterInfo, HeartbeatRequest, HeartbeatResponse, LastHeartbeat, ListClustersRequest,
    ListClustersResponse, RegisterRequest, RegisterResponse,
};

/// The deploy keys this cloud accepts, from a YAML (or JSON) list:
///
/// ```yaml
/// - key: px-dep-2b7c0f52-9d0e-4f39-8a57-6c5f1e0d4a11
///   org: example        # optional: whose key it is, for logs
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployKeys {
    /// Key → org (empty when not given).
    keys: BTreeMap<String, String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: Option<String>,
    #[serde(default)]
    org: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeployKeysError {
    #[error("{0}")]
    Yaml(String),
    /// `index` counts from 0, as the entries appear in the file.
    #[error("deploy key {index}: key: {message}")]
    Key { index: usize, message: &'static str },
    #[error("deploy keys {first} and {second} are the same key")]
    Duplicate { first: usize, second: usize },
}

impl DeployKeys {
    /// Reads a deploy-keys file's text. An empty file accepts no key.
    pub fn parse(text: &str) -> Result<DeployKeys, DeployKeysError> {
        if text.trim().is_empty() {
            return Ok(DeployKeys::default());
        }
        let entries: Vec<KeyEntry> =
            serde_saphyr::from_str(text).map_err(|e| DeployKeysError::Yaml(e.to_string()))?;
        let mut keys = BTreeMap::new();
        let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let key = entry.key.ok_or(DeployKeysError::Key {
                index,
                message: "is missing",
            })?;
            let key = key.trim().to_owned();
            if key.is_empty() {
                return Err(DeployKeysError::Key {
                    index,
                    message: "is empty",
                });
            }
            if let Some(first) = first_seen.insert(key.clone(), index) {
                return Err(DeployKeysError::Duplicate {
                    first,
                    second: index,
                });
            }
            keys.insert(key, entry.org);
        }
        Ok(DeployKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The org of `key`, when it is one of ours.
    fn org_of(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysLoadError {
    #[error("reading the deploy keys file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the deploy keys file {path}: {error}")]
    Invalid {
        path: PathBuf,
        error: DeployKeysError,
    },
}

/// Reads and checks a deploy-keys file.
pub fn load_keys(path: &Path) -> Result<DeployKeys, KeysLoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeysLoadError::Read {
        path: path.to_owned(),
        error,
    })?;
    DeployKeys::parse(&text).map_err(|error| KeysLoadError::Invalid {
        path: path.to_owned(),
        error,
    })
}

/// Why a registry call was refused; each maps to one gRPC code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("node_count: {0} is negative")]
    NegativeNodeCount(i32),
    #[error(
        "unknown deploy key: it is not one of this cloud's deploy keys (check the Vizier's deployKey or its deploy-key Secret)"
    )]
    UnknownDeployKey,
    #[error("cluster {0} is not registered (register first)")]
    UnknownCluster(String),
    #[error("cluster {0} was registered with another deploy key")]
    KeyMismatch(String),
}

impl From<RegistryError> for Status {
    fn from(error: RegistryError) -> Status {
        let message = error.to_string();
        match error {
            RegistryError::Missing { .. } | RegistryError::NegativeNodeCount(_) => {
                Status::invalid_argument(message)
            }
            RegistryError::UnknownDeployKey => Status::unauthenticated(message),
            RegistryError::UnknownCluster(_) => Status::not_found(message),
            RegistryError::KeyMismatch(_) => Status::permission_denied(message),
        }
    }
}

/// A heartbeat as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    pub sent: Option<Timestamp>,
    pub received: Timestamp,
    pub vizier_phase: String,
    pub node_count: i32,
    pub vizier_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub id: String,
    pub uid: String,
    pub name: String,
    pub vizier_version: String,
    pub deploy_key: String,
    pub registered_at: Timestamp,
    pub last_heartbeat: Option<Beat>,
}

/// Every registered cluster, by kube-system uid.
#[derive(Debug, Default)]
pub struct Registry {
    keys: DeployKeys,
    by_uid: BTreeMap<String, Cluster>,
    /// cluster id → uid.
    ids: BTreeMap<String, String>,
}

fn required(value: &str, field: &'static str) -> Result<(), RegistryError> {
    if value.trim().is_empty() {
        return Err(RegistryError::Missing { field });
    }
    Ok(())
}

fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn from_proto(t: &prost_types::Timestamp) -> Option<Timestamp> {
    Timestamp::new(t.seconds, t.nanos).ok()
}

impl Registry {
    pub fn new(keys: DeployKeys) -> Self {
        Registry {
            keys,
            ..Default::default()
        }
    }

    fn check_key(&self, key: &str) -> Result<(), RegistryError> {
        required(key, "deploy_key")?;
        self.keys
            .org_of(key)
            .map(|_| ())
            .ok_or(RegistryError::UnknownDeployKey)
    }

    /// Registers the cluster, or finds it again by uid (its name, version and key are refreshed).
    /// Returns the cluster id; `new_id` makes one for a cluster seen for the first time.
    pub fn register(
        &mut self,
        request: &RegisterRequest,
        now: Timestamp,
        new_id: impl FnOnce() -> String,
    ) -> Result<String, RegistryError> {
        self.check_key(&request.deploy_key)?;
        required(&request.cluster_uid, "cluster_uid")?;
        if let Some(cluster) = self.by_uid.get_mut(&request.cluster_uid) {
            cluster.name = request.cluster_name.clone();
            cluster.vizier_version = request.vizier_version.clone();
            cluster.deploy_key = request.deploy_key.clone();
            return Ok(cluster.id.clone());
        }
        let id = new_id();
        self.ids.insert(id.clone(), request.cluster_uid.clone());
        self.by_uid.insert(
            request.cluster_uid.clone(),
            Cluster {
                id: id.clone(),
                uid: request.cluster_uid.clone(),
                name: request.cluster_name.clone(),
                vizier_version: request.vizier_version.clone(),
                deploy_key: request.deploy_key.clone(),
                registered_at: now,
                last_heartbeat: None,
            },
        );
        Ok(id)
    }

    /// Records a heartbeat of a registered cluster, sent with the key it registered with.
    pub fn heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        now: Timestamp,
    ) -> Result<(), RegistryError> {
        self.check_key(&request.deploy_key)?;
        required(&request.cluster_id, "cluster_id")?;
        if request.node_count < 0 {
            return Err(RegistryError::NegativeNodeCount(request.node_count));
        }
        let cluster = self
            .ids
            .get(&request.cluster_id)
            .and_then(|uid| self.by_uid.get_mut(uid))
            .ok_or_else(|| RegistryError::UnknownCluster(request.cluster_id.clone()))?;
        if cluster.deploy_key != request.deploy_key {
            return Err(RegistryError::KeyMismatch(request.cluster_id.clone()));
        }
        if !request.vizier_version.is_empty() {
            cluster.vizier_version = request.vizier_version.clone();
        }
        cluster.last_heartbeat = Some(Beat {
            sent: request.time.as_ref().and_then(from_proto),
            received: now,
            vizier_phase: request.vizier_phase.clone(),
            node_count: request.node_count,
            vizier_version: request.vizier_version.clone(),
        });
        Ok(())
    }

    /// Every cluster, by name then id.
    pub fn clusters(&self) -> Vec<&Cluster> {
        let mut clusters: Vec<&Cluster> = self.by_uid.values().collect();
        clusters.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        clusters
    }
}

impl Cluster {
    pub fn to_proto(&self) -> ClusterInfo {
        ClusterInfo {
            cluster_id: self.id.clone(),
            cluster_uid: self.uid.clone(),
            cluster_name: self.name.clone(),
            vizier_version: self.vizier_version.clone(),
            registered_at: Some(timestamp(self.registered_at)),
            last_heartbeat: self.last_heartbeat.as_ref().map(|beat| LastHeartbeat {
                time: beat.sent.map(timestamp),
                received: Some(timestamp(beat.received)),
                vizier_phase: beat.vizier_phase.clone(),
                node_count: beat.node_count,
                vizier_version: beat.vizier_version.clone(),
            }),
        }
    }
}

/// The gRPC service over a shared [`Registry`].
#[derive(Clone, Debug)]
pub struct RegistryService {
    registry: Arc<Mutex<Registry>>,
}

impl RegistryService {
    pub fn new(keys: DeployKeys) -> Self {
        RegistryService {
            registry: Arc::new(Mutex::new(Registry::new(keys))),
        }
    }

    pub fn into_server(self) -> VizierRegistryServer<RegistryService> {
        VizierRegistryServer::new(self)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("not poisoned")
    }
}

#[tonic::async_trait]
impl VizierRegistry for RegistryService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let request = request.into_inner();
        let (result, org) = {
            let mut registry = self.registry();
            let result = registry.register(&request, Timestamp::now(), || {
                uuid::Uuid::new_v4().to_string()
            });
            let org = registry.keys.org_of(&request.deploy_key).map(str::to_owned);
            (result, org)
        };
        match result {
            Ok(cluster_id) => {
                tracing::info!(%cluster_id, cluster_uid = %request.cluster_uid, cluster_name = %request.cluster_name, version = %request.vizier_version, org = org.unwrap_or_default(), "Register");
                Ok(Response::new(RegisterResponse { cluster_id }))
            }
            Err(error) => {
                tracing::warn!(cluster_uid = %request.cluster_uid, %error, "Register refused");
                Err(error.into())
            }
        }
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        self.registry()
            .heartbeat(&request, Timestamp::now())
            .map_err(|error| {
                tracing::warn!(cluster_id = %request.cluster_id, %error, "Heartbeat refused");
                Status::from(error)
            })?;
        tracing::debug!(cluster_id = %request.cluster_id, phase = %request.vizier_phase, nodes = request.node_count, "Heartbeat");
        Ok(Response::new(HeartbeatResponse {}))
    }

    async fn list_clusters(
        &self,
        _request: Request<ListClustersRequest>,
    ) -> Result<Response<ListClustersResponse>, Status> {
        let clusters = self
            .registry()
            .clusters()
            .into_iter()
            .map(Cluster::to_proto)
            .collect();
        Ok(Response::new(ListClustersResponse { clusters }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "- key: px-dep-good\n  org: example\n- key: px-dep-other\n";

    fn registry() -> Registry {
        Registry::new(DeployKeys::parse(KEYS).unwrap())
    }

    fn register(uid: &str, key: &str) -> RegisterRequest {
        RegisterRequest {
            deploy_key: key.into(),
            cluster_uid: uid.into(),
            cluster_name: format!("name-of-{uid}"),
            vizier_version: "0.14.15".into(),
        }
    }

    fn beat(id: &str, key: &str, phase: &str, nodes: i32) -> HeartbeatRequest {
        HeartbeatRequest {
            cluster_id: id.into(),
            deploy_key: key.into(),
            vizier_phase: phase.into(),
            node_count: nodes,
            vizier_version: "0.14.15".into(),
            time: Some(timestamp(Timestamp::from_second(1_700_000_000).unwrap())),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn deploy_keys_files_name_the_bad_entry() {
        let keys = DeployKeys::parse(KEYS).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.org_of("px-dep-good"), Some("example"));
        assert_eq!(keys.org_of("px-dep-other"), Some(""));
        assert_eq!(keys.org_of("px-dep-nope"), None);
        // JSON is YAML too.
        let json = DeployKeys::parse(
            r#"[{"key": "px-dep-good", "org": "example"}, {"key": "px-dep-other"}]"#,
        );
        assert_eq!(json.unwrap(), keys);
        assert!(DeployKeys::parse("").unwrap().is_empty());
        assert_eq!(
            DeployKeys::parse("- key: a\n- org: x\n").unwrap_err(),
            DeployKeysError::Key {
                index: 1,
                message: "is missing"
            }
        );
        assert_eq!(
            DeployKeys::parse("- key: ' '\n").unwrap_err(),
            DeployKeysError::Key {
                index: 0,
                message: "is empty"
            }
        );
        assert_eq!(
            DeployKeys::parse("- key: a\n- key: b\n- key: a\n").unwrap_err(),
            DeployKeysError::Duplicate {
                first: 0,
                second: 2
            }
        );
        let err = DeployKeys::parse("- key: a\n  colour: red\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert!(matches!(
            DeployKeys::parse("key: a\n").unwrap_err(),
            DeployKeysError::Yaml(_)
        ));
    }

    #[test]
    fn the_same_cluster_uid_gets_the_same_cluster_id() {
        let mut registry = registry();
        let mut ids = ["id-1", "id-2"].into_iter();
        let first = registry
            .register(&register("uid-a", "px-dep-good"), at(10), || {
                ids.next().unwrap().into()
            })
            .unwrap();
        assert_eq!(first, "id-1");
        // Again, even with the org's other key and a new version: same id, record refreshed.
        let mut again = register("uid-a", "px-dep-other");
        again.vizier_version = "0.15.0".into();
        let second = registry
            .register(&again, at(20), || panic!("no new id for a known cluster"))
            .unwrap();
        assert_eq!(second, "id-1");
        let clusters = registry.clusters();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].vizier_version, "0.15.0");
        assert_eq!(clusters[0].registered_at, at(10));
        // Another cluster gets another id.
        let other = registry
            .register(&register("uid-b", "px-dep-good"), at(30), || {
                ids.next().unwrap().into()
            })
            .unwrap();
        assert_eq!(other, "id-2");
        assert_eq!(registry.clusters().len(), 2);
    }

    #[test]
    fn unknown_keys_and_missing_fields_are_refused_with_the_right_code() {
        let mut registry = registry();
        let err = registry
            .register(&register("uid-a", "px-dep-wrong"), at(1), || "id".into())
            .unwrap_err();
        assert_eq!(err, RegistryError::UnknownDeployKey);
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().contains("deploy key"),
            "{}",
            status.message()
        );
        assert!(registry.clusters().is_empty());

        let err = registry
            .register(&register("", "px-dep-good"), at(1), || "id".into())
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::Missing {
                field: "cluster_uid"
            }
        );
        assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
        let err = registry
            .register(&register("uid-a", ""), at(1), || "id".into())
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::Missing {
                field: "deploy_key"
            }
        );
    }

    #[test]
    fn heartbeats_need_a_registered_cluster_and_its_key() {
        let mut registry = registry();
        let err = registry
            .heartbeat(&beat("id-1", "px-dep-good", "Healthy", 3), at(5))
            .unwrap_err();
        assert_eq!(err, RegistryError::UnknownCluster("id-1".into()));
        assert_eq!(Status::from(err).code(), tonic::Code::NotFound);

        registry
            .register(&register("uid-a", "px-dep-good"), at(10), || "id-1".into())
            .unwrap();
        assert!(registry.clusters()[0].last_heartbeat.is_none());
        registry
            .heartbeat(&beat("id-1", "px-dep-good", "Updating", 3), at(11))
            .unwrap();
        registry
            .heartbeat(&beat("id-1", "px-dep-good", "Healthy", 3), at(12))
            .unwrap();
        let last = registry.clusters()[0].last_heartbeat.clone().unwrap();
        assert_eq!(last.vizier_phase, "Healthy");
        assert_eq!(last.node_count, 3);
        assert_eq!(last.received, at(12));
        assert_eq!(last.sent, Some(at(1_700_000_000)));

        let err = registry
            .heartbeat(&beat("id-1", "px-dep-other", "Healthy", 3), at(13))
            .unwrap_err();
        assert_eq!(Status::from(err).code(), tonic::Code::PermissionDenied);
        let err = registry
            .heartbeat(&beat("id-1", "px-dep-wrong", "Healthy", 3), at(13))
            .unwrap_err();
        assert_eq!(Status::from(err).code(), tonic::Code::Unauthenticated);
        let err = registry
            .heartbeat(&beat("id-1", "px-dep-good", "Healthy", -1), at(13))
            .unwrap_err();
        assert_eq!(err, RegistryError::NegativeNodeCount(-1));
        // Refused heartbeats change nothing.
        assert_eq!(
            registry.clusters()[0]
                .last_heartbeat
                .as_ref()
                .unwrap()
                .received,
            at(12)
        );
    }

    #[tokio::test]
    async fn list_clusters_reports_the_last_heartbeat() {
        let service = RegistryService::new(DeployKeys::parse(KEYS).unwrap());
        let id = service
            .register(Request::new(register("uid-a", "px-dep-good")))
            .await
            .unwrap()
            .into_inner()
            .cluster_id;
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        service
            .heartbeat(Request::new(beat(&id, "px-dep-good", "Healthy", 3)))
            .await
            .unwrap();
        let clusters = service
            .list_clusters(Request::new(ListClustersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .clusters;
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].cluster_id, id);
        assert_eq!(clusters[0].cluster_uid, "uid-a");
        let last = clusters[0].last_heartbeat.clone().unwrap();
        assert_eq!(
            (last.vizier_phase.as_str(), last.node_count),
            ("Healthy", 3)
        );
    }
}
