//! The broker API forwarded to another server: the query broker answers clients by passing
//! `ExecuteScript` and `Health` to Kelvin and streaming the replies back unchanged.

use futures::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::client::{ClientError, MAX_MESSAGE_BYTES, endpoint, root_cause};
use crate::proto;
use crate::proto::vizier_service_client::VizierServiceClient;
use crate::proto::vizier_service_server::VizierService;
use crate::server::ResponseStream;
use crate::tls::ClientTls;

pub struct ForwardingApi {
    upstream: String,
    client: VizierServiceClient<Channel>,
}

impl ForwardingApi {
    /// Forwards to `upstream` (`HOST:PORT`, or a URL without `tls`). Connects on the first request
    /// and reconnects as needed, so the upstream may start later.
    pub fn new(upstream: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let channel = endpoint(upstream, tls)?.connect_lazy();
        Ok(ForwardingApi {
            upstream: upstream.to_owned(),
            client: VizierServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// Says which upstream failed, keeping the status code (an unreachable Kelvin is `UNAVAILABLE`).
    fn upstream_error(&self, status: Status) -> Status {
        let cause = std::error::Error::source(&status)
            .map(root_cause)
            .unwrap_or_else(|| status.message().to_owned());
        Status::new(status.code(), format!("{}: {cause}", self.upstream))
    }
}

#[tonic::async_trait]
impl VizierService for ForwardingApi {
    type ExecuteScriptStream = ResponseStream;

    async fn execute_script(
        &self,
        request: Request<proto::ExecuteScriptRequest>,
    ) -> Result<Response<Self::ExecuteScriptStream>, Status> {
        let replies = self
            .client
            .clone()
            .execute_script(request.into_inner())
            .await
            .map_err(|s| self.upstream_error(s))?
            .into_inner();
        Ok(Response::new(Box::pin(replies.boxed())))
    }

    async fn health(
        &self,
        request: Request<proto::HealthRequest>,
    ) -> Result<Response<proto::HealthResponse>, Status> {
        let reply = self
            .client
            .clone()
            .health(request.into_inner())
            .await
            .map_err(|s| self.upstream_error(s))?;
        Ok(Response::new(reply.into_inner()))
    }
}
