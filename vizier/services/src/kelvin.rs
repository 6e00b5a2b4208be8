//! `vizier kelvin`: the query engine over every PEM's store. Serves the query API; each scan asks
//! all PEMs (`vizier pem --listen`) for their rows and the rest of the plan runs here, so aggregates
//! span nodes. With `--pem-service` the PEMs are whatever a headless Service's DNS name resolves to
//! when a query starts; with `--nats-url`, the PEMs whose heartbeats arrived lately.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{ArgGroup, Args};
use pixie_engine::server::VizierApi;
use pixie_engine::{Engine, PemAddrs, RemoteTables};

use crate::agents::{self, NatsArgs};
use crate::collect;
use crate::health::{self, HealthArgs};
use crate::query_api::{self, EngineArgs, TlsArgs};

/// Kelvin's port in Pixie (`kelvin-service`), and ours.
pub const DEFAULT_PORT: u16 = 59300;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("pems").required(true).args(["pem", "pem_service", "nats_url"])))]
pub struct KelvinArgs {
    /// Where the query API listens (gRPC). Port 0 picks a free port; the chosen address is printed.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// A PEM's query API, HOST:PORT (`vizier pem --listen`); repeat or separate with commas.
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',', value_parser = host_port)]
    pem: Vec<String>,
    /// A DNS name and port whose addresses are all the PEMs (a headless Service), looked up for
    /// every query.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    pem_service: Option<String>,
    /// The PEMs announce themselves on NATS (`vizier pem --nats-url`).
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    health: HealthArgs,
}

impl KelvinArgs {
    /// The PEMs given by --pem or --pem-service.
    fn listed_pems(&self) -> PemAddrs {
        match &self.pem_service {
            Some(service) => PemAddrs::Service(service.clone()),
            None => PemAddrs::Fixed(self.pem.clone()),
        }
    }
}

pub fn run(args: KelvinArgs) -> anyhow::Result<()> {
    let tls = args.tls.load()?;
    collect::runtime()?.block_on(async {
        let (pems, heartbeats) = match args.nats.connect("kelvin", args.tls.dir()).await? {
            Some(nats) => {
                let directory = args.nats.directory();
                let follower = agents::follow_heartbeats(nats, directory.clone()).await?;
                (PemAddrs::Heartbeats(directory), Some(follower))
            }
            None => (args.listed_pems(), None),
        };
        let mut tables = RemoteTables::new(pems.clone());
        if let Some(tls) = &tls {
            tables = tables.with_tls(tls.client().clone());
        }
        let engine = Engine::remote(tables.clone(), args.engine.config())
            .context("starting the query engine")?;
        let api = VizierApi::over_pems(std::sync::Arc::new(engine), tables);
        let serving = query_api::serve(args.listen, api, tls.as_ref()).await?;
        // On stdout, for scripts and tests that start us on port 0.
        println!("vizier kelvin listening on {}", serving.addr());
        tracing::info!(addr = %serving.addr(), pems = %pems, tls = tls.is_some(), "kelvin up");
        let health = args.health.start(health::always_ready()).await?;
        collect::shutdown_signal(None).await;
        if let Some(heartbeats) = heartbeats {
            heartbeats.abort();
        }
        if let Some(health) = health {
            health.stop().await?;
        }
        serving.stop().await
    })
}

/// `HOST:PORT` with a numeric port (a bare host would leave the PEMs' port unknown).
fn host_port(value: &str) -> Result<String, String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} is not HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{value:?}: port {port:?} is not a number from 0 to 65535"))?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kelvin: KelvinArgs,
    }

    #[test]
    fn pems_are_a_list_a_service_or_nats_heartbeats_but_only_one() {
        let cli = Cli::try_parse_from(["k", "--pem", "a:1,b:2", "--pem", "c:3"]).unwrap();
        assert_eq!(
            cli.kelvin.listed_pems(),
            PemAddrs::Fixed(vec!["a:1".into(), "b:2".into(), "c:3".into()])
        );
        let cli = Cli::try_parse_from(["k", "--pem-service", "pems.ns.svc:50400"]).unwrap();
        assert_eq!(
            cli.kelvin.listed_pems(),
            PemAddrs::Service("pems.ns.svc:50400".into())
        );
        assert!(Cli::try_parse_from(["k"]).is_err());
        assert!(Cli::try_parse_from(["k", "--pem", "a:1", "--pem-service", "s:1"]).is_err());
        let cli = Cli::try_parse_from(["k", "--nats-url", "tls://pl-nats:4222"]).unwrap();
        assert_eq!(
            cli.kelvin.nats.nats_url.as_deref(),
            Some("tls://pl-nats:4222")
        );
        assert!(Cli::try_parse_from(["k", "--nats-url", "n:1", "--pem", "a:1"]).is_err());
        let err = Cli::try_parse_from(["k", "--pem", "a"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--pem") && err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn host_port_wants_a_host_and_a_numeric_port() {
        assert_eq!(host_port("[::1]:50400").as_deref(), Ok("[::1]:50400"));
        assert!(host_port(":50400").is_err());
        assert!(host_port("pems:http").is_err());
    }
}
