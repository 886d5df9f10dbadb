//! Calling another service: one way to make the connection (address, token,
//! trace context, message limit) and one retry rule for UNAVAILABLE.
//!
//! ```text
//! let tracking = Client::lazy(&config.tracking_addr, Some(&config.tracking_token))?;
//! let mut api = mlops_runtime::grpc_client!(TrackingServiceClient, tracking);
//! let run = retry(&Backoff::default(), || api.clone().get_run(req.clone())).await?;
//! ```

use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::grpc::{endpoint_uri, ClientAuth};

/// The largest message a client sends or accepts unless told otherwise: a page of
/// runs, a metric history, a chunk of a model's file.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long a client waits for a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one service, with its credential and message limit.
#[derive(Clone)]
pub struct Client {
    addr: String,
    channel: Channel,
    auth: ClientAuth,
    max_message_bytes: usize,
}

impl Client {
    fn endpoint(addr: &str) -> anyhow::Result<(String, tonic::transport::Endpoint)> {
        let uri = endpoint_uri(addr.trim());
        let endpoint = Channel::from_shared(uri.clone())
            .map_err(|e| {
                anyhow::anyhow!("`{addr}` is not a gRPC address ({e}); expected http://HOST:PORT")
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        Ok((uri, endpoint))
    }

    /// A client of the service at `addr` (`host:port` or `http://host:port`) that
    /// connects on its first call: the caller starts even when the callee is not up
    /// yet, and calls answer UNAVAILABLE meanwhile. `token`, when not empty, is sent
    /// as `authorization: Bearer <token>`.
    pub fn lazy(addr: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let (uri, endpoint) = Self::endpoint(addr)?;
        Ok(Client {
            addr: uri,
            channel: endpoint.connect_lazy(),
            auth: ClientAuth::new(token)?,
            max_message_bytes: MAX_MESSAGE_BYTES,
        })
    }

    /// A client of the service at `addr`, connected now: an unreachable service is
    /// an error naming the address.
    pub async fn connect(addr: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let (uri, endpoint) = Self::endpoint(addr)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {uri}: {e}"))?;
        Ok(Client {
            addr: uri,
            channel,
            auth: ClientAuth::new(token)?,
            max_message_bytes: MAX_MESSAGE_BYTES,
        })
    }

    /// The same client with another message limit.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The callee's address as a URI (for messages).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The channel alone (health checks).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The channel with the credential and trace context on every call: what a
    /// generated client is made from (see [`grpc_client!`](crate::grpc_client)).
    pub fn intercepted(&self) -> InterceptedService<Channel, ClientAuth> {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    /// The message limit, both ways.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

/// A generated tonic client (`TrackingServiceClient`) over a [`Client`], with its
/// credential, trace context and message limit.
#[macro_export]
macro_rules! grpc_client {
    ($generated:ident, $client:expr) => {{
        let c: &$crate::client::Client = &$client;
        $generated::new(c.intercepted())
            .max_decoding_message_size(c.max_message_bytes())
            .max_encoding_message_size(c.max_message_bytes())
    }};
}

/// How often and how long [`retry`] tries.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait between two tries.
    pub max: Duration,
    /// Tries in all, the first included.
    pub attempts: u32,
}

impl Default for Backoff {
    /// 100 ms doubling to 2 s, five tries: about 3 s for a callee restarting.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempts: 5,
        }
    }
}

/// Calls `call` until it answers something other than UNAVAILABLE (the callee is
/// down or restarting), waiting longer each time; the last answer when the tries
/// run out. Only for calls that are safe to repeat.
pub async fn retry<T, F, Fut>(backoff: &Backoff, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut wait = backoff.initial;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && attempt < backoff.attempts => {
                tracing::debug!(attempt, error = %status.message(), "callee unavailable; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(attempts: u32) -> Backoff {
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            attempts,
        }
    }

    #[tokio::test]
    async fn retries_unavailable_until_an_answer() {
        let calls = AtomicU32::new(0);
        let got = retry(&quick(5), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Status::unavailable("down")),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_never_retries_other_codes() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(&quick(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::unavailable("down"))
        })
        .await;
        assert_eq!(got.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(&quick(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::not_found("no such run"))
        })
        .await;
        assert_eq!(got.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_bad_address_is_refused_with_the_expected_form() {
        let err = Client::lazy("http://exa mple:1", None).err().unwrap();
        assert!(
            err.to_string().contains("expected http://HOST:PORT"),
            "{err}"
        );
        let err = Client::connect("127.0.0.1:1", None).await.err().unwrap();
        assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
    }
}
