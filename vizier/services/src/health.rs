//! `/healthz` and `/readyz` over plain HTTP on their own port, for the kubelet's probes: the gRPC
//! APIs admit only clients with a certificate of the Vizier's CA, which the kubelet does not hold.
//! `/healthz` answers while the process runs; `/readyz` answers 200 once the role can do its work,
//! and 503 with the reason until then.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;

use crate::background::BackgroundServer;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Serve /healthz and /readyz (plain HTTP) here, for Kubernetes probes. Port 0 picks a free
    /// port; the chosen address is logged.
    #[arg(long, value_name = "ADDR", env = "PL_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
}

/// Why the role is not ready yet, or None when it is.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl HealthArgs {
    /// Starts serving when --health-listen is given.
    pub async fn start(&self, readiness: Readiness) -> anyhow::Result<Option<BackgroundServer>> {
        let Some(listen) = self.health_listen else {
            return Ok(None);
        };
        let server = BackgroundServer::start(
            listen,
            "--health-listen",
            "the health endpoints",
            |listener, stop| async move {
                Ok(axum::serve(listener, router(readiness))
                    .with_graceful_shutdown(stop)
                    .await?)
            },
        )
        .await?;
        tracing::info!(addr = %server.addr(), "probes served on /healthz and /readyz");
        Ok(Some(server))
    }
}

fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness() {
                        None => (StatusCode::OK, "ready".to_owned()),
                        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
                    }
                }
            }),
        )
}

/// Always ready: for roles that can work as soon as they serve.
pub fn always_ready() -> Readiness {
    Arc::new(|| None)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use clap::Parser;
    use pixie_tests::http_get;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        health: HealthArgs,
    }

    #[tokio::test]
    async fn readyz_reports_the_reason_until_ready_and_healthz_always_answers() {
        let ready = Arc::new(AtomicBool::new(false));
        let readiness: Readiness = {
            let ready = ready.clone();
            Arc::new(move || {
                (!ready.load(Ordering::Relaxed))
                    .then(|| "the initial list of Pods is not in".into())
            })
        };
        let cli = Cli::try_parse_from(["x", "--health-listen", "127.0.0.1:0"]).unwrap();
        let server = cli.health.start(readiness).await.unwrap().unwrap();
        assert_eq!(
            http_get(server.addr(), "/healthz").await,
            (200, "ok".into())
        );
        assert_eq!(
            http_get(server.addr(), "/readyz").await,
            (503, "the initial list of Pods is not in".into())
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            http_get(server.addr(), "/readyz").await,
            (200, "ready".into())
        );
        server.stop().await.unwrap();

        let off = Cli::try_parse_from(["x"]).unwrap();
        assert!(off.health.start(always_ready()).await.unwrap().is_none());
    }
}
