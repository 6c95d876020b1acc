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

/// The largest body of an answer with an error status that is read.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// How much of an unusable answer an error message shows.
const MAX_EXCERPT_BYTES: usize = 512;

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
        let status = response.status();
        // A refusal's body is a short JSON-RPC error; nothing longer is worth reading.
        let limit = if status.is_success() {
            self.limit
        } else {
            MAX_ERROR_BODY_BYTES
        };
        let too_large = || TransportErrorKind::custom(TooLarge { limit });
        let announced = response.content_length();
        if announced.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(announced.map_or(0, |length| length as usize));
        while let Some(chunk) = response.chunk().await.map_err(TransportErrorKind::custom)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // Some providers send a JSON-RPC error ("nonce too low", "already known") with a
            // 4xx or 5xx status: it is the node's answer, not a failure to reach it.
            if let Ok(packet) = serde_json::from_slice::<ResponsePacket>(&body)
                && packet.is_error()
            {
                return Ok(packet);
            }
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                excerpt(&body),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|error| TransportError::deser_err(error, excerpt(&body)))
    }
}

/// The start of an answer, for an error message: enough to tell what answered, never the
/// megabytes a hostile endpoint sent (they would be copied into every log line).
fn excerpt(body: &[u8]) -> String {
    let shown = &body[..body.len().min(MAX_EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if body.len() > shown.len() {
        text.push_str(&format!("… ({} bytes)", body.len()));
    }
    text
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
