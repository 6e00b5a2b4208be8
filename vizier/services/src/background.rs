//! A server running on its own task until told to stop: the query APIs and the probe endpoints
//! share this shape, so each role's shutdown reads the same.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when [`BackgroundServer::stop`] is called; the server then finishes what it serves.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct BackgroundServer {
    addr: SocketAddr,
    what: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl BackgroundServer {
    /// Binds `listen` (`flag` names it in the error) and runs `serve` on the listener; `what`
    /// names the server in the errors [`stop`](Self::stop) returns.
    pub async fn start<F>(
        listen: SocketAddr,
        flag: &str,
        what: &'static str,
        serve: impl FnOnce(TcpListener, StopSignal) -> F,
    ) -> anyhow::Result<Self>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("{flag} {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Box::pin(async {
                let _ = stopped.await;
            }),
        ));
        Ok(Self {
            addr,
            what,
            stop,
            task,
        })
    }

    /// The bound address (the chosen port when `listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let what = self.what;
        self.task
            .await
            .with_context(|| format!("the {what} task panicked"))?
            .with_context(|| format!("serving {what}"))
    }
}
