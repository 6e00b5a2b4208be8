//! `vizier connector`: the cloud connector. Registers the cluster with the cloud's Vizier registry
//! (the deploy key from `PL_DEPLOY_KEY`, the uid of the kube-system namespace as the cluster's
//! uid, as Pixie's connector does), writes the cluster id the cloud answers into
//! `pl-cluster-secrets` (key `cluster-id`), then sends a heartbeat every `--heartbeat-interval`
//! with the Vizier's `status.vizierPhase` and the cluster's node count. Transient failures are
//! retried with backoff; a refused deploy key is logged and retried slowly, since the key may be
//! fixed. A cloud that forgot the cluster (NOT_FOUND) is registered with again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use pixie_cloud::client::{self as cloud, ClientError, ClientSettings, Trust};
use pixie_cloud::proto::vizier_registry_client::VizierRegistryClient;
use pixie_cloud::proto::{HeartbeatRequest, RegisterRequest};
use pixie_crds::Vizier;
use tonic::Code;

use crate::collect::{self, parse_duration};

/// The Secret the operator creates and the connector adds `cluster-id` to.
pub const CLUSTER_SECRETS: &str = "pl-cluster-secrets";
pub const CLUSTER_ID_KEY: &str = "cluster-id";
/// The connector's own field manager: it owns `cluster-id` only, never the operator's keys.
pub const FIELD_MANAGER: &str = "pixie-cloud-connector";
/// The environment variable holding the deploy key (rendered from the deploy-key Secret); not a
/// flag, so that the key never shows in a process listing.
pub const DEPLOY_KEY_ENV: &str = "PL_DEPLOY_KEY";

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// The cloud's Vizier registry, HOST:PORT (the Vizier's spec.cloudAddr).
    #[arg(long, env = "PL_CLOUD_ADDR")]
    cloud_addr: String,
    /// PEM CA the cloud's certificate is checked against, instead of the system's roots.
    #[arg(long, env = "PL_CLOUD_CA_FILE")]
    cloud_ca_file: Option<PathBuf>,
    /// Talk to the cloud without TLS (development clouds only).
    #[arg(long, env = "PL_CLOUD_INSECURE", conflicts_with = "cloud_ca_file")]
    cloud_insecure: bool,
    /// Namespace of the Vizier and of pl-cluster-secrets.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// Name of the Vizier whose phase is reported.
    #[arg(long, env = "PL_VIZIER_NAME")]
    vizier: String,
    /// The cluster's name in the cloud (spec.clusterName); the Vizier's name when not given.
    #[arg(long, env = "PL_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Time between heartbeats.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Time between registrations while the cloud refuses the deploy key.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    refused_retry: Duration,
}

/// How the connector retries: exponential backoff for transient failures, a slow fixed retry
/// while the cloud refuses the key or the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
    pub refused: Duration,
}

/// What to do after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The cloud is unreachable or busy: try again soon.
    Transient,
    /// The deploy key is not the cloud's: nothing changes until the key (or the cloud's list) does.
    KeyRefused,
    /// The cloud rejected the request itself; retried slowly, as an operator may fix the cause.
    Rejected,
}

impl Failure {
    pub fn of(error: &ClientError) -> Failure {
        match error {
            ClientError::Rpc { code, .. } => match code {
                Code::Unauthenticated => Failure::KeyRefused,
                Code::InvalidArgument
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::Unimplemented => Failure::Rejected,
                _ => Failure::Transient,
            },
            // A malformed address never gets better by itself either.
            ClientError::Address(_) => Failure::Rejected,
            _ => Failure::Transient,
        }
    }
}

impl Retry {
    /// The wait before attempt `failures + 1`, after `failures` consecutive failures.
    pub fn delay(&self, failure: Failure, failures: u32) -> Duration {
        match failure {
            Failure::Transient => {
                let doubled = self
                    .first
                    .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
                doubled.min(self.max)
            }
            Failure::KeyRefused | Failure::Rejected => self.refused,
        }
    }
}

/// The Vizier's state as reported in a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VizierState {
    pub phase: String,
    pub version: String,
}

impl VizierState {
    /// `status.vizierPhase` (as its schema spells it) and the running version: `status.version`,
    /// else the pinned `spec.version`.
    pub fn of(vizier: &Vizier) -> VizierState {
        let status = vizier.status.as_ref();
        let phase = status
            .and_then(|s| s.vizier_phase.as_ref())
            .and_then(|p| serde_json::to_value(p).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let version = status
            .and_then(|s| s.version.clone())
            .or_else(|| vizier.spec.version.clone())
            .unwrap_or_default();
        VizierState { phase, version }
    }
}

/// `pl-cluster-secrets` as the connector applies it: only `cluster-id`.
pub fn cluster_id_patch(cluster_id: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(CLUSTER_SECRETS.to_owned()),
            ..Default::default()
        },
        data: Some(
            [(
                CLUSTER_ID_KEY.to_owned(),
                ByteString(cluster_id.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// Everything the connector needs, resolved from the flags.
pub struct Connector {
    client: Client,
    cloud_addr: String,
    cloud: ClientSettings,
    namespace: String,
    vizier: String,
    cluster_name: String,
    deploy_key: String,
    heartbeat_interval: Duration,
    retry: Retry,
}

pub fn run(args: ConnectorArgs) -> anyhow::Result<()> {
    let deploy_key = std::env::var(DEPLOY_KEY_ENV)
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .with_context(|| format!("{DEPLOY_KEY_ENV} (the deploy key) is not set"))?;
    let trust = match (&args.cloud_ca_file, args.cloud_insecure) {
        (_, true) => Trust::Plaintext,
        (Some(path), false) => Trust::Ca(
            std::fs::read(path)
                .with_context(|| format!("reading --cloud-ca-file {}", path.display()))?,
        ),
        (None, false) => Trust::SystemRoots,
    };
    collect::runtime()?.block_on(async {
        let client = Client::try_default()
            .await
            .context("connecting to Kubernetes")?;
        let connector = Connector {
            client,
            cloud_addr: args.cloud_addr,
            cloud: ClientSettings::new(trust),
            namespace: args.namespace,
            cluster_name: args.cluster_name.unwrap_or_else(|| args.vizier.clone()),
            vizier: args.vizier,
            deploy_key,
            heartbeat_interval: args.heartbeat_interval,
            retry: Retry {
                first: Duration::from_secs(1),
                max: Duration::from_secs(30),
                refused: args.refused_retry,
            },
        };
        tokio::select! {
            () = connector.run() => {}
            () = shutdown_signal() => {}
        }
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "no SIGTERM handler; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

fn rpc_error(call: &'static str, status: tonic::Status) -> ClientError {
    ClientError::Rpc {
        call,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

impl Connector {
    /// Registers, records the cluster id, then heartbeats; registers again when the cloud forgets
    /// the cluster. Every failure is retried, so this runs until the process is stopped.
    async fn run(&self) {
        let cluster_uid = self.cluster_uid().await;
        tracing::info!(%cluster_uid, cloud = %self.cloud_addr, "cluster uid from kube-system");
        loop {
            let cluster_id = self.register(&cluster_uid).await;
            self.record_cluster_id(&cluster_id).await;
            self.heartbeat_until_forgotten(&cluster_id).await;
            tracing::warn!(%cluster_id, "the cloud no longer knows this cluster; registering again");
        }
    }

    /// The uid of kube-system, retried until the API answers.
    async fn cluster_uid(&self) -> String {
        let api = Api::<Namespace>::all(self.client.clone());
        let mut failures = 0;
        loop {
            match api.get("kube-system").await {
                Ok(ns) => {
                    if let Some(uid) = ns.metadata.uid.filter(|u| !u.is_empty()) {
                        return uid;
                    }
                    tracing::error!("namespace kube-system has no uid");
                }
                Err(error) => {
                    tracing::warn!(%error, "reading namespace kube-system (its uid is the cluster uid)")
                }
            }
            failures += 1;
            tokio::time::sleep(self.retry.delay(Failure::Transient, failures)).await;
        }
    }

    async fn vizier_state(&self) -> VizierState {
        match Api::<Vizier>::namespaced(self.client.clone(), &self.namespace)
            .get(&self.vizier)
            .await
        {
            Ok(vizier) => VizierState::of(&vizier),
            Err(error) => {
                tracing::warn!(vizier = %self.vizier, %error, "reading the Vizier; reporting no phase");
                VizierState::default()
            }
        }
    }

    async fn client(&self) -> Result<VizierRegistryClient<tonic::transport::Channel>, ClientError> {
        let channel = cloud::connect(&self.cloud_addr, &self.cloud).await?;
        Ok(VizierRegistryClient::new(channel))
    }

    /// Registers until the cloud answers with a cluster id.
    async fn register(&self, cluster_uid: &str) -> String {
        let mut failures = 0;
        loop {
            let state = self.vizier_state().await;
            let request = RegisterRequest {
                deploy_key: self.deploy_key.clone(),
                cluster_uid: cluster_uid.to_owned(),
                cluster_name: self.cluster_name.clone(),
                vizier_version: state.version,
            };
            let result = async {
                self.client()
                    .await?
                    .register(request)
                    .await
                    .map_err(|status| rpc_error("Register", status))
            }
            .await;
            let error = match result {
                Ok(response) => {
                    let cluster_id = response.into_inner().cluster_id;
                    tracing::info!(%cluster_id, %cluster_uid, cluster_name = %self.cluster_name, "registered with the cloud");
                    return cluster_id;
                }
                Err(error) => error,
            };
            failures += 1;
            let failure = Failure::of(&error);
            let delay = self.retry.delay(failure, failures);
            match failure {
                Failure::KeyRefused => tracing::error!(
                    cloud = %self.cloud_addr,
                    %error,
                    retry_in = ?delay,
                    "the cloud refused the deploy key ({DEPLOY_KEY_ENV}, from the Vizier's deployKey or customDeployKeySecret): the Vizier is not registered"
                ),
                Failure::Rejected => {
                    tracing::error!(cloud = %self.cloud_addr, %error, retry_in = ?delay, "the cloud rejected the registration")
                }
                Failure::Transient => {
                    tracing::warn!(cloud = %self.cloud_addr, %error, retry_in = ?delay, "cannot register yet")
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Applies `cluster-id` to pl-cluster-secrets under the connector's own field manager, once the
    /// operator has created the Secret (applying to a missing Secret would create it without the
    /// operator's keys, and the operator never rewrites a Secret that exists).
    async fn record_cluster_id(&self, cluster_id: &str) {
        let api = Api::<Secret>::namespaced(self.client.clone(), &self.namespace);
        let mut failures = 0;
        loop {
            let result = async {
                let existing = api.get_opt(CLUSTER_SECRETS).await?;
                let Some(existing) = existing else {
                    return Ok(false);
                };
                let current = existing
                    .data
                    .as_ref()
                    .and_then(|d| d.get(CLUSTER_ID_KEY))
                    .map(|v| v.0.as_slice());
                if current != Some(cluster_id.as_bytes()) {
                    // Forced: cluster-id is the connector's, whoever last wrote it.
                    let params = PatchParams::apply(FIELD_MANAGER).force();
                    api.patch(
                        CLUSTER_SECRETS,
                        &params,
                        &Patch::Apply(cluster_id_patch(cluster_id)),
                    )
                    .await?;
                }
                Ok::<_, kube::Error>(true)
            }
            .await;
            match result {
                Ok(true) => {
                    tracing::info!(%cluster_id, secret = CLUSTER_SECRETS, "cluster id recorded");
                    return;
                }
                Ok(false) => tracing::info!(
                    secret = CLUSTER_SECRETS,
                    "waiting for the operator to create the Secret"
                ),
                Err(error) => {
                    tracing::warn!(secret = CLUSTER_SECRETS, %error, "recording the cluster id")
                }
            }
            failures += 1;
            tokio::time::sleep(self.retry.delay(Failure::Transient, failures)).await;
        }
    }

    async fn node_count(&self) -> Result<i32, kube::Error> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list_metadata(&ListParams::default())
            .await?;
        Ok(i32::try_from(nodes.items.len()).unwrap_or(i32::MAX))
    }

    /// Heartbeats every interval; returns when the cloud says it does not know the cluster.
    async fn heartbeat_until_forgotten(&self, cluster_id: &str) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client = None;
        loop {
            tick.tick().await;
            let state = self.vizier_state().await;
            let node_count = match self.node_count().await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "listing nodes; heartbeat skipped");
                    continue;
                }
            };
            let now = std::time::SystemTime::now();
            let request = HeartbeatRequest {
                cluster_id: cluster_id.to_owned(),
                deploy_key: self.deploy_key.clone(),
                vizier_phase: state.phase.clone(),
                node_count,
                vizier_version: state.version,
                time: Some(now.into()),
            };
            if client.is_none() {
                match self.client().await {
                    Ok(c) => client = Some(c),
                    Err(error) => {
                        tracing::warn!(cloud = %self.cloud_addr, %error, "cannot reach the cloud; heartbeat skipped");
                        continue;
                    }
                }
            }
            let Some(registry) = client.as_mut() else {
                continue;
            };
            match registry.heartbeat(request).await {
                Ok(_) => {
                    tracing::debug!(%cluster_id, phase = %state.phase, node_count, "heartbeat")
                }
                Err(status) if status.code() == Code::NotFound => return,
                Err(status) => {
                    let error = rpc_error("Heartbeat", status);
                    let level = Failure::of(&error);
                    if level == Failure::Transient {
                        tracing::warn!(%error, "heartbeat failed");
                    } else {
                        tracing::error!(%error, "the cloud refused the heartbeat");
                    }
                    // A new channel next time, in case this one is broken.
                    client = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rpc(code: Code) -> ClientError {
        ClientError::Rpc {
            call: "Register",
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn a_refused_key_is_retried_slowly_and_outages_back_off() {
        let retry = Retry {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            refused: Duration::from_secs(60),
        };
        assert_eq!(
            Failure::of(&rpc(Code::Unauthenticated)),
            Failure::KeyRefused
        );
        assert_eq!(Failure::of(&rpc(Code::InvalidArgument)), Failure::Rejected);
        assert_eq!(Failure::of(&rpc(Code::Unavailable)), Failure::Transient);
        assert_eq!(
            Failure::of(&ClientError::Connect("refused".into())),
            Failure::Transient
        );
        assert_eq!(
            Failure::of(&ClientError::Address("nope".into())),
            Failure::Rejected
        );
        let delays: Vec<u64> = (1..=7)
            .map(|n| retry.delay(Failure::Transient, n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            retry.delay(Failure::Transient, u32::MAX),
            Duration::from_secs(30)
        );
        assert_eq!(retry.delay(Failure::KeyRefused, 1), Duration::from_secs(60));
        assert_eq!(retry.delay(Failure::Rejected, 9), Duration::from_secs(60));
    }

    #[test]
    fn the_vizier_state_is_its_phase_and_running_version() {
        let vizier = |status: serde_json::Value| -> Vizier {
            serde_json::from_value(json!({
                "apiVersion": "px.dev/v1alpha1", "kind": "Vizier", "metadata": {"name": "v"},
                "spec": {"version": "0.14.2"}, "status": status,
            }))
            .unwrap()
        };
        assert_eq!(
            VizierState::of(&vizier(
                json!({"vizierPhase": "Healthy", "version": "0.14.15"})
            )),
            VizierState {
                phase: "Healthy".into(),
                version: "0.14.15".into()
            }
        );
        assert_eq!(
            VizierState::of(&vizier(json!({}))),
            VizierState {
                phase: String::new(),
                version: "0.14.2".into()
            }
        );
    }

    #[test]
    fn the_applied_secret_holds_only_the_cluster_id() {
        let patch = serde_json::to_value(cluster_id_patch("c1d")).unwrap();
        assert_eq!(
            patch,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pl-cluster-secrets"},
                   "data": {"cluster-id": "YzFk"}})
        );
    }
}
