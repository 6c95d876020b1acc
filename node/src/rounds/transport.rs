//! How a round reaches witnesses: the network for other nodes, the node's own witness directly.
//! The leader and interior nodes of a tree talk through this trait, so tests run rounds over
//! in-memory nodes and Byzantine transports.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chainiac_net::wire::{Request, Response};
use chainiac_protocol::keys::PublicKey;

/// A boxed future, for the witness transport.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the leader reaches witnesses (the network, or the local witness for itself).
pub trait WitnessTransport: Send + Sync {
    /// Sends `request` to the witness with key `witness`. Errors say why no answer came.
    fn call(&self, witness: PublicKey, request: Request)
    -> BoxFuture<'_, Result<Response, String>>;

    /// The key of the node using the transport, if it is a witness that can lead a tree round
    /// (requests to it are answered locally).
    fn local_key(&self) -> Option<PublicKey> {
        None
    }
}

/// `transport.call`, given up after `timeout`.
pub async fn call(
    transport: &dyn WitnessTransport,
    key: PublicKey,
    request: Request,
    timeout: Duration,
) -> Result<Response, String> {
    match tokio::time::timeout(timeout, transport.call(key, request)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
