//! The HTTP transport of the JSON-RPC client: alloy's own reads a whole answer into memory
//! however large, so a hostile or broken endpoint could make the node hold gigabytes. This one
//! refuses an answer over [`MAX_RESPONSE_BYTES`], by its announced length before reading it
//! and by counting while it streams in.

use std::task::{Context, Poll};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// The largest JSON-RPC answer read. The largest ones the node asks for are a block with its
/// transactions and the block's receipts: under a 60 M gas limit, calldata and log data stay
/// under about 8 MB, twice that in hex.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// JSON-RPC over HTTP(S) with a bounded answer size.
#[derive(Clone, Debug)]
pub(crate) struct CappedHttp {
    client: reqwest::Client,
    url: reqwest::Url,
    limit: usize,
}

/// An answer over the limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the answer is larger than {limit} bytes; refusing to read it (is this an Ethereum JSON-RPC endpoint?)"
)]
struct TooLarge {
    limit: usize,
}

impl CappedHttp {
    pub(crate) fn new(client: reqwest::Client, url: reqwest::Url, limit: usize) -> Self {
        Self { client, url, limit }
    }

    async fn call(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let mut response = self
            .client
            .post(self.url)
            .json(&request)
            .headers(request.headers())
            .send()
            .await
            .map_err(TransportErrorKind::custom)?;
        let too_large = || TransportErrorKind::custom(TooLarge { limit: self.limit });
        if response
            .content_length()
            .is_some_and(|length| length > self.limit as u64)
        {
            return Err(too_large());
        }
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(TransportErrorKind::custom)? {
            if body.len() + chunk.len() > self.limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|error| TransportError::deser_err(error, String::from_utf8_lossy(&body)))
    }
}

impl tower::Service<RequestPacket> for CappedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().call(request))
    }
}
