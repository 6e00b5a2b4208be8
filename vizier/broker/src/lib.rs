//! The query broker's CronScript runner: one process per Vizier that schedules the CronScripts
//! naming that Vizier, runs each through the Vizier's query API over the window since the previous
//! run, and delivers the results to the DataExports the script references.
//!
//! Pure parts ([`schedule`], [`status`], [`mapping`], the config half of [`delivery`]) decide; the
//! [`scheduler`] loop and the [`runner`] do the I/O. With several replicas only the holder of the
//! Vizier's Lease ([`leader`]) schedules.

pub mod delivery;
pub mod leader;
pub mod mapping;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use pixie_crds::Vizier;
use tokio::sync::mpsc;

pub use leader::LeaseSettings;
pub use scheduler::TermEnd;
pub use status::FIELD_MANAGER;

/// How a broker runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Vizier's namespace: CronScripts, PxlScripts, DataExports and Secrets are read here.
    pub namespace: String,
    /// Name of the Vizier whose CronScripts this broker runs (their spec.vizierRef).
    pub vizier: String,
    /// The Vizier's query API (`vizier standalone --listen`, or the query broker service).
    pub query_addr: String,
    /// Mutual TLS to the query API (the Vizier's service certificates); plaintext when None.
    pub query_tls: Option<pixie_engine::ClientTls>,
    /// Compete for this Lease before scheduling; schedule right away when None (one replica).
    pub lease: Option<LeaseSettings>,
    /// This replica's name in Events.
    pub instance: String,
    /// Data points and spans each DataExport's queue holds while its endpoint is down.
    pub max_queued_records: u64,
    /// How long a run waits for its deliveries before reporting them as failing (they go on
    /// retrying in the background).
    pub delivery_wait: Duration,
    /// How long after its window ends a run queries: the collector pushes rows to the tables a
    /// moment after they happen.
    pub settle: Duration,
}

impl Settings {
    pub fn new(
        namespace: impl Into<String>,
        vizier: impl Into<String>,
        query_addr: impl Into<String>,
    ) -> Self {
        Settings {
            namespace: namespace.into(),
            vizier: vizier.into(),
            query_addr: query_addr.into(),
            query_tls: None,
            lease: None,
            instance: "pixie-broker".into(),
            max_queued_records: pixie_export::SinkConfig::DEFAULT_MAX_QUEUED_RECORDS,
            delivery_wait: Duration::from_secs(5),
            settle: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader election on Lease {lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("reading Vizier {namespace}/{name}: {source}")]
    Vizier {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A short label per cause, for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Lease { .. } => "lease",
            Error::Vizier { .. } => "vizier",
        }
    }
}

/// Runs the broker until `shutdown` resolves: waits for its Vizier to exist, then, in each term
/// it holds the lease (or at once without one), schedules the Vizier's CronScripts.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    tokio::pin!(shutdown);
    tokio::select! {
        found = wait_for_vizier(&client, &settings) => found?,
        _ = &mut shutdown => return Ok(()),
    }
    let sinks = Arc::new(delivery::Sinks::default());
    let reporter = Reporter {
        controller: "pixie-broker".into(),
        instance: Some(settings.instance.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    loop {
        let mut leading = match &settings.lease {
            None => None,
            Some(lease) => {
                let receiver = leader::campaign(client.clone(), &settings.namespace, lease)
                    .await
                    .map_err(|source| Error::Lease {
                        lease: lease.name.clone(),
                        source,
                    })?;
                Some(receiver)
            }
        };
        if let Some(receiver) = &mut leading {
            tracing::info!(identity = %settings.lease.as_ref().map(|l| l.identity.as_str()).unwrap_or(""), "waiting for the lease");
            tokio::select! {
                _ = receiver.wait_for(|leader| *leader) => {}
                _ = &mut shutdown => return Ok(()),
            }
            tracing::info!("holding the lease");
        }
        let lost = async {
            match &mut leading {
                Some(receiver) => {
                    let _ = receiver.wait_for(|leader| !*leader).await;
                }
                None => std::future::pending().await,
            }
        };
        let (deliveries_tx, deliveries_rx) = mpsc::unbounded_channel();
        let runner = Arc::new(runner::Runner {
            client: client.clone(),
            namespace: settings.namespace.clone(),
            query_addr: settings.query_addr.clone(),
            query_tls: settings.query_tls.clone(),
            sinks: sinks.clone(),
            max_queued_records: settings.max_queued_records,
            delivery_wait: settings.delivery_wait,
            settle: settings.settle,
            deliveries: deliveries_tx,
        });
        let scheduler = scheduler::Scheduler::new(
            client.clone(),
            settings.namespace.clone(),
            settings.vizier.clone(),
            recorder.clone(),
            runner,
        );
        match scheduler.run(deliveries_rx, lost, &mut shutdown).await {
            TermEnd::Shutdown => return Ok(()),
            TermEnd::LostLease => {
                tracing::warn!("lost the lease; stopped scheduling and competing again");
                drop(leading);
            }
        }
    }
}

/// The broker serves one Vizier; until it exists there is nothing to run scripts on.
async fn wait_for_vizier(client: &Client, settings: &Settings) -> Result<(), Error> {
    let api: Api<Vizier> = Api::namespaced(client.clone(), &settings.namespace);
    let mut warned = false;
    loop {
        match api.get_opt(&settings.vizier).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {
                if !warned {
                    tracing::warn!(namespace = %settings.namespace, vizier = %settings.vizier, "the Vizier does not exist yet; waiting");
                    warned = true;
                }
            }
            Err(source) => {
                return Err(Error::Vizier {
                    namespace: settings.namespace.clone(),
                    name: settings.vizier.clone(),
                    source,
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
