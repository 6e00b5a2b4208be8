//! PEM heartbeats over the Vizier's NATS: `vizier pem --nats-url` publishes where its query API is
//! every `--heartbeat-interval`, and `vizier kelvin --nats-url` queries the PEMs heard from within
//! three intervals. With `--tls-dir` the NATS connection uses the service certificates, as the
//! operator's NATS requires.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use pixie_engine::{AgentDirectory, AgentHeartbeat, HEARTBEAT_SUBJECT, tls};

use crate::collect::parse_duration;

/// A PEM is forgotten after this many missed heartbeats.
const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The Vizier's NATS, e.g. tls://pl-nats:4222 (the operator sets it).
    #[arg(long, value_name = "URL", env = "PL_NATS_URL")]
    pub nats_url: Option<String>,
    /// How often a PEM announces itself on NATS; Kelvin forgets a PEM after three missed ones.
    #[arg(long, value_parser = parse_duration, default_value = "5s", env = "PL_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Duration,
}

impl NatsArgs {
    /// Connects when --nats-url is given. The first connection is retried in the background, so a
    /// PEM that starts before NATS does not fail.
    pub async fn connect(
        &self,
        name: &str,
        tls_dir: Option<&Path>,
    ) -> anyhow::Result<Option<async_nats::Client>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        let down = Arc::new(AtomicBool::new(false));
        let server = url.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (down, server) = (down.clone(), server.clone());
                async move { log_connection(&event, &down, &server) }
            });
        if let Some(dir) = tls_dir {
            options = options
                .require_tls(true)
                .add_root_certificates(dir.join(tls::CA_FILE))
                .add_client_certificate(
                    dir.join(tls::CLIENT_CERT_FILE),
                    dir.join(tls::CLIENT_KEY_FILE),
                );
        }
        let client = options
            .connect(url.as_str())
            .await
            .with_context(|| format!("--nats-url {url}"))?;
        Ok(Some(client))
    }

    /// An empty directory with this interval's TTL.
    pub fn directory(&self) -> AgentDirectory {
        AgentDirectory::new(self.heartbeat_interval * MISSED_HEARTBEATS)
    }

    /// Publishes `heartbeat` now and every interval, until the task is dropped.
    pub fn spawn_heartbeats(
        &self,
        client: async_nats::Client,
        heartbeat: AgentHeartbeat,
    ) -> tokio::task::JoinHandle<()> {
        let every = self.heartbeat_interval;
        let payload: bytes::Bytes = serde_json::to_vec(&heartbeat)
            .expect("a heartbeat serializes")
            .into();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut failing = false;
            loop {
                ticks.tick().await;
                // Publishing only queues while NATS is away; log the outage once.
                match client.publish(HEARTBEAT_SUBJECT, payload.clone()).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("heartbeats published again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "publishing a heartbeat");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// Logs the NATS connection's changes once each: reconnect attempts repeat every few seconds.
fn log_connection(event: &async_nats::Event, down: &AtomicBool, server: &str) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            let was_down = down.swap(false, Ordering::Relaxed);
            tracing::info!(server, reconnected = was_down, "connected to NATS");
        }
        Event::Disconnected | Event::ClientError(_) | Event::ServerError(_) => {
            if !down.swap(true, Ordering::Relaxed) {
                tracing::warn!(server, %event, "the NATS connection is failing; retrying");
            }
        }
        other => tracing::info!(server, event = %other, "NATS"),
    }
}

/// Fills `directory` from the PEMs' heartbeats until the task is dropped.
pub async fn follow_heartbeats(
    client: async_nats::Client,
    directory: AgentDirectory,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut heartbeats = client
        .subscribe(HEARTBEAT_SUBJECT)
        .await
        .context("subscribing to PEM heartbeats")?;
    Ok(tokio::spawn(async move {
        while let Some(message) = heartbeats.next().await {
            match serde_json::from_slice::<AgentHeartbeat>(&message.payload) {
                Ok(heartbeat) => {
                    let (node, addr) = (heartbeat.node_name.clone(), heartbeat.addr.clone());
                    if directory.heard(heartbeat, Instant::now()) {
                        tracing::info!(node, addr, "PEM heard");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed heartbeat"),
            }
        }
    }))
}
