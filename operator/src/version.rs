//! Which Vizier version to run. A pinned `spec.version` wins; `disableAutoUpdate` keeps what runs;
//! otherwise the latest version comes from a version source: the cloud's artifact tracker when a
//! cloud is configured (`spec.cloudAddr`), the operator's own version when not.
//!
//! [`resolve`] is pure: the reconciler first asks [`tracker_to_ask`] whether the cloud is needed,
//! gets the answer through [`LatestVersions::lookup`] (cached per address for a TTL, so that a
//! steady-state reconcile costs no call), and hands it in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pixie_cloud::{ClientSettings, Trust};
use pixie_crds::{VizierSpec, VizierStatus};

/// The artifact Pixie's operator asks the tracker about.
pub const VIZIER_ARTIFACT: &str = "vizier";
/// Where a development cloud's API answers inside the cluster (Pixie's `devCloudNamespace`).
pub const DEV_CLOUD_PORT: u16 = 51200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Run this version; `source` says where it came from (for logs), `note` is something the
    /// user should know (it goes into the Ready message).
    Version { version: String, source: &'static str, note: Option<String> },
    /// No version can be chosen; the message says why and what to do.
    Unavailable(String),
}

/// What the artifact tracker said when asked for the latest Vizier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudLatest {
    Version(String),
    Unavailable {
        addr: String,
        error: String,
        /// The latest version this operator last got from that address, if any.
        last_known: Option<String>,
    },
}

fn running(status: Option<&VizierStatus>) -> Option<&str> {
    status.and_then(|s| s.version.as_deref()).filter(|v| !v.is_empty())
}

fn pinned(spec: &VizierSpec) -> Option<&str> {
    spec.version.as_deref().filter(|v| !v.is_empty())
}

/// The artifact tracker's address for this spec: `spec.cloudAddr`, or, as Pixie does for a
/// development cloud (`spec.devCloudNamespace`), its in-cluster API service.
pub fn tracker_address(spec: &VizierSpec) -> Option<String> {
    spec.cloud_addr.as_deref().filter(|a| !a.is_empty())?;
    match spec.dev_cloud_namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => Some(format!("api-service.{ns}.svc.cluster.local:{DEV_CLOUD_PORT}")),
        None => spec.cloud_addr.clone(),
    }
}

/// The artifact tracker to ask before [`resolve`], or None when the answer cannot matter.
pub fn tracker_to_ask(spec: &VizierSpec, status: Option<&VizierStatus>) -> Option<String> {
    if pinned(spec).is_some() || (spec.disable_auto_update == Some(true) && running(status).is_some()) {
        return None;
    }
    tracker_address(spec)
}

/// Chooses the version. `cloud` is the tracker's answer when [`tracker_to_ask`] named one.
pub fn resolve(
    spec: &VizierSpec,
    status: Option<&VizierStatus>,
    operator_version: &str,
    cloud: Option<&CloudLatest>,
) -> Resolution {
    let version = |version: &str, source| Resolution::Version { version: version.to_owned(), source, note: None };
    if let Some(v) = pinned(spec) {
        return version(v, "spec.version");
    }
    let running = running(status);
    if let (Some(true), Some(v)) = (spec.disable_auto_update, running) {
        return version(v, "status.version (disableAutoUpdate)");
    }
    let Some(addr) = tracker_address(spec) else {
        return version(operator_version, "the operator's version");
    };
    match cloud {
        Some(CloudLatest::Version(v)) => version(v, "the artifact tracker"),
        // A cloud outage must not take down a Vizier that runs: it stays where it is (or goes on
        // to the latest version this operator last saw) until the tracker answers again.
        Some(CloudLatest::Unavailable { addr, error, last_known }) => match last_known.as_deref().or(running) {
            Some(v) => Resolution::Version {
                version: v.to_owned(),
                source: "the last known version (the artifact tracker is unavailable)",
                note: Some(format!("the artifact tracker at {addr} is unavailable ({error}); staying on {v}")),
            },
            None => Resolution::Unavailable(format!(
                "spec.version is empty and the latest version cannot be resolved: the artifact tracker at {addr} is \
                 unavailable: {error}"
            )),
        },
        None => Resolution::Unavailable(format!("the artifact tracker at {addr} was not asked for the latest version")),
    }
}

/// How the operator reaches clouds' artifact trackers.
#[derive(Clone, Debug)]
pub struct CloudSettings {
    /// Trust this CA (PEM) instead of the system roots: for clouds with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Dial without TLS: development clouds only. Wins over `ca_file`.
    pub insecure: bool,
    /// How long a tracker's answer is reused before it is asked again.
    pub version_ttl: Duration,
}

impl Default for CloudSettings {
    fn default() -> Self {
        CloudSettings { ca_file: None, insecure: false, version_ttl: Duration::from_secs(600) }
    }
}

impl CloudSettings {
    /// Whom to trust when dialing a cloud; the CA file is read now, so a rotated CA is picked up.
    /// The cloud connector is handed the same trust.
    pub fn trust(&self) -> Result<Trust, String> {
        Ok(match (&self.ca_file, self.insecure) {
            (_, true) => Trust::Plaintext,
            (Some(path), false) => Trust::Ca(
                std::fs::read(path).map_err(|e| format!("reading the cloud CA file {}: {e}", path.display()))?,
            ),
            (None, false) => Trust::SystemRoots,
        })
    }

    pub fn client(&self) -> Result<ClientSettings, String> {
        Ok(ClientSettings::new(self.trust()?))
    }
}

#[derive(Clone, Debug)]
struct Cached {
    version: String,
    fetched: Instant,
}

/// The latest Vizier version per tracker address, as last fetched.
#[derive(Debug, Default)]
pub struct LatestVersions {
    cached: Mutex<HashMap<String, Cached>>,
}

impl LatestVersions {
    /// The cached answer for `addr` if it is younger than `ttl`.
    pub fn fresh(&self, addr: &str, now: Instant, ttl: Duration) -> Option<String> {
        let cached = self.cached.lock().expect("not poisoned");
        cached.get(addr).filter(|c| now.saturating_duration_since(c.fetched) < ttl).map(|c| c.version.clone())
    }

    /// The last answer for `addr`, however old.
    pub fn last_known(&self, addr: &str) -> Option<String> {
        self.cached.lock().expect("not poisoned").get(addr).map(|c| c.version.clone())
    }

    pub fn remember(&self, addr: &str, version: String, now: Instant) {
        self.cached.lock().expect("not poisoned").insert(addr.to_owned(), Cached { version, fetched: now });
    }

    /// The tracker's latest Vizier at `addr`: from the cache while fresh, else asked. Failures are
    /// not cached: the reconciler's backoff paces the retries.
    pub async fn lookup(&self, addr: &str, settings: &CloudSettings) -> CloudLatest {
        if let Some(version) = self.fresh(addr, Instant::now(), settings.version_ttl) {
            return CloudLatest::Version(version);
        }
        let unavailable = |error: String| CloudLatest::Unavailable {
            addr: addr.to_owned(),
            error,
            last_known: self.last_known(addr),
        };
        let client = match settings.client() {
            Ok(client) => client,
            Err(error) => return unavailable(error),
        };
        match pixie_cloud::latest_release(addr, VIZIER_ARTIFACT, &client).await {
            Ok(release) => {
                tracing::info!(%addr, version = %release.version_str, "latest Vizier from the artifact tracker");
                self.remember(addr, release.version_str.clone(), Instant::now());
                CloudLatest::Version(release.version_str)
            }
            Err(error) => {
                tracing::warn!(%addr, %error, "artifact tracker unavailable");
                unavailable(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(version: &str) -> VizierStatus {
        VizierStatus { version: Some(version.to_owned()), ..Default::default() }
    }

    fn cloud() -> VizierSpec {
        VizierSpec { cloud_addr: Some("withpixie.ai:443".into()), ..Default::default() }
    }

    fn version_of(resolution: Resolution) -> String {
        match resolution {
            Resolution::Version { version, .. } => version,
            other => panic!("expected a version, got {other:?}"),
        }
    }

    fn down(last_known: Option<&str>) -> CloudLatest {
        CloudLatest::Unavailable {
            addr: "withpixie.ai:443".into(),
            error: "connection refused".into(),
            last_known: last_known.map(str::to_owned),
        }
    }

    #[test]
    fn pinned_version_wins() {
        let spec = VizierSpec { version: Some("0.14.7".into()), cloud_addr: Some("a:1".into()), ..Default::default() };
        assert_eq!(tracker_to_ask(&spec, None), None);
        assert_eq!(resolve(&spec, Some(&status("0.1.0")), "9.9.9", None),
            Resolution::Version { version: "0.14.7".into(), source: "spec.version", note: None });
    }

    #[test]
    fn empty_version_follows_the_operator_unless_auto_update_is_disabled() {
        let spec = VizierSpec::default();
        assert_eq!(tracker_to_ask(&spec, None), None);
        assert_eq!(version_of(resolve(&spec, Some(&status("0.1.0")), "0.2.0", None)), "0.2.0");
        let pinned = VizierSpec { disable_auto_update: Some(true), ..Default::default() };
        assert_eq!(version_of(resolve(&pinned, Some(&status("0.1.0")), "0.2.0", None)), "0.1.0");
        // Nothing runs yet: even with auto-update disabled, the first version is the latest.
        assert_eq!(version_of(resolve(&pinned, None, "0.2.0", None)), "0.2.0");
    }

    #[test]
    fn with_a_cloud_the_latest_version_comes_from_its_artifact_tracker() {
        let spec = cloud();
        assert_eq!(tracker_to_ask(&spec, Some(&status("0.14.1"))).as_deref(), Some("withpixie.ai:443"));
        let latest = CloudLatest::Version("0.14.15".into());
        assert_eq!(version_of(resolve(&spec, Some(&status("0.14.1")), "0.2.0", Some(&latest))), "0.14.15");
        // disableAutoUpdate keeps what runs without asking; the first deploy still asks.
        let frozen = VizierSpec { disable_auto_update: Some(true), ..cloud() };
        assert_eq!(tracker_to_ask(&frozen, Some(&status("0.14.1"))), None);
        assert_eq!(version_of(resolve(&frozen, Some(&status("0.14.1")), "0.2.0", None)), "0.14.1");
        assert!(tracker_to_ask(&frozen, None).is_some());
        assert_eq!(version_of(resolve(&frozen, None, "0.2.0", Some(&latest))), "0.14.15");
    }

    #[test]
    fn an_unavailable_tracker_blocks_only_a_first_deploy() {
        let spec = cloud();
        let Resolution::Unavailable(message) = resolve(&spec, None, "0.2.0", Some(&down(None))) else {
            panic!("a first deploy cannot guess a version");
        };
        assert!(message.contains("withpixie.ai:443") && message.contains("connection refused"), "{message}");
        match resolve(&spec, Some(&status("0.14.1")), "0.2.0", Some(&down(None))) {
            Resolution::Version { version, note: Some(note), .. } => {
                assert_eq!(version, "0.14.1");
                assert!(note.contains("withpixie.ai:443") && note.contains("staying on 0.14.1"), "{note}");
            }
            other => panic!("a running Vizier stays where it is, got {other:?}"),
        }
        // An upgrade this operator already started goes on.
        let resolution = resolve(&spec, Some(&status("0.14.1")), "0.2.0", Some(&down(Some("0.14.15"))));
        assert_eq!(version_of(resolution), "0.14.15");
        assert!(matches!(resolve(&spec, None, "0.2.0", None), Resolution::Unavailable(_)));
    }

    #[test]
    fn a_dev_cloud_is_asked_through_its_in_cluster_api_service() {
        let spec = VizierSpec { dev_cloud_namespace: Some("plc-dev".into()), ..cloud() };
        assert_eq!(tracker_address(&spec).as_deref(), Some("api-service.plc-dev.svc.cluster.local:51200"));
        let no_cloud = VizierSpec { dev_cloud_namespace: Some("plc-dev".into()), ..Default::default() };
        assert_eq!(tracker_address(&no_cloud), None);
    }

    #[test]
    fn answers_are_cached_per_address_for_the_ttl() {
        let cache = LatestVersions::default();
        let start = Instant::now();
        let ttl = Duration::from_secs(600);
        assert_eq!(cache.fresh("a:1", start, ttl), None);
        cache.remember("a:1", "0.14.15".into(), start);
        assert_eq!(cache.fresh("a:1", start + Duration::from_secs(599), ttl).as_deref(), Some("0.14.15"));
        assert_eq!(cache.fresh("a:1", start + ttl, ttl), None);
        assert_eq!(cache.last_known("a:1").as_deref(), Some("0.14.15"));
        assert_eq!(cache.fresh("b:1", start, ttl), None);
    }

    #[test]
    fn trust_follows_the_flags() {
        assert_eq!(CloudSettings::default().client().unwrap().trust, Trust::SystemRoots);
        let insecure = CloudSettings { insecure: true, ca_file: Some("/nonexistent".into()), ..Default::default() };
        assert_eq!(insecure.client().unwrap().trust, Trust::Plaintext);
        let missing = CloudSettings { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(missing.client().unwrap_err().contains("/nonexistent/ca.pem"));
    }

    #[tokio::test]
    async fn an_unreachable_tracker_is_unavailable_with_its_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let cache = LatestVersions::default();
        let settings = CloudSettings { insecure: true, ..Default::default() };
        match cache.lookup(&addr, &settings).await {
            CloudLatest::Unavailable { addr: a, error, last_known: None } => {
                assert_eq!(a, addr);
                assert!(!error.is_empty());
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        // A fresh cached answer is used without dialing.
        cache.remember(&addr, "0.14.15".into(), Instant::now());
        assert_eq!(cache.lookup(&addr, &settings).await, CloudLatest::Version("0.14.15".into()));
    }
}
