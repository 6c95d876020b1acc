//! An Ethereum JSON-RPC endpoint (`http://` or `https://`) through alloy's provider over
//! reqwest with rustls, with a request timeout and optionally an extra trusted certificate
//! authority (a private endpoint's own CA).

use std::path::Path;
use std::time::Duration;

use alloy::network::Ethereum;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionReceipt;
use alloy::transports::{RpcError as TransportRpcError, TransportErrorKind};

use crate::AnchorError;
use crate::capped_http::{CappedHttp, MAX_RESPONSE_BYTES};

/// How long one JSON-RPC request may take before the endpoint counts as unreachable.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// JSON-RPC failures.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The URL is not `http(s)://host[:port][/path]`.
    #[error(
        "invalid Ethereum RPC URL {url:?}: {reason}; use http://HOST:PORT or https://HOST[/PATH]"
    )]
    Url { url: String, reason: String },
    /// The extra certificate authority cannot be read.
    #[error("cannot use the certificate authority {path}: {reason}")]
    Certificate { path: String, reason: String },
    /// Connection refused, reset, TLS failure or timed out.
    #[error("cannot reach the Ethereum node at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The node answered with a JSON-RPC error.
    #[error("the Ethereum node at {url} refused {method}: {message}")]
    Refused {
        url: String,
        method: String,
        message: String,
    },
    /// The answer is not what JSON-RPC promises.
    #[error("unreadable answer from the Ethereum node at {url} to {method}: {detail}")]
    Malformed {
        url: String,
        method: String,
        detail: String,
    },
}

impl RpcError {
    /// The node's JSON-RPC error message, if it answered one.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::Refused { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Connection settings shared by every endpoint of a node.
#[derive(Clone, Debug)]
pub struct EndpointOptions {
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// A PEM file with extra certificate authorities to trust (besides the system's).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ca_file: None,
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest hides a TLS failure's reason in its source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// One Ethereum node's JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The URL as shown in logs and errors: scheme, host and port only (a provider's URL often
    /// carries its API key in the path or query).
    url: String,
    /// The whole URL, to take out of the HTTP client's own messages.
    full: String,
    provider: RootProvider<Ethereum>,
}

/// `scheme://host[:port]`, with `/…` when the URL had more (a path, a query, credentials).
fn shown(url: &reqwest::Url) -> String {
    let mut text = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        text.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        text.push_str("/…");
    }
    text
}

/// How an endpoint URL is shown in logs and errors: scheme, host and port only (see
/// [`Endpoint::url`]); `None` if it is not a URL.
pub fn display_url(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().map(|parsed| shown(&parsed))
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, RpcError> {
    let failed = |reason: String| RpcError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

impl Endpoint {
    /// The endpoint at `url` (`http://` or `https://`).
    pub fn new(url: &str, options: &EndpointOptions) -> Result<Self, RpcError> {
        let bad = |reason: &str| RpcError::Url {
            url: url.into(),
            reason: reason.into(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirect would replay the request to wherever the endpoint points (another
            // host, plain http): an endpoint is the URL the operator configured, nothing else.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_file {
            builder = builder.tls_certs_merge(read_ca(path)?);
        }
        let shown = shown(&parsed);
        let client = builder.build().map_err(|e| RpcError::Unreachable {
            url: shown.clone(),
            message: format!("cannot set up the HTTP client: {e}"),
        })?;
        let full = parsed.as_str().to_owned();
        let is_local = alloy::transports::utils::guess_local_url(&parsed);
        let transport = CappedHttp::new(client, parsed, MAX_RESPONSE_BYTES);
        let rpc =
            RpcClient::new(transport, is_local).with_poll_interval(Duration::from_millis(200));
        Ok(Self {
            url: shown,
            full,
            provider: RootProvider::new(rpc),
        })
    }

    /// The URL for messages: scheme, host and port (no path or query, which may hold a key).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The provider, to make calls.
    pub(crate) fn provider(&self) -> &RootProvider<Ethereum> {
        &self.provider
    }

    /// Classifies a failed call to `method`.
    pub(crate) fn error(
        &self,
        method: &str,
        error: TransportRpcError<TransportErrorKind>,
    ) -> RpcError {
        let url = self.url.clone();
        match error {
            TransportRpcError::ErrorResp(payload) => RpcError::Refused {
                url,
                method: method.into(),
                message: payload.message.to_string(),
            },
            TransportRpcError::Transport(kind) => RpcError::Unreachable {
                message: with_causes(&kind).replace(&self.full, &url),
                url,
            },
            other => RpcError::Malformed {
                url,
                method: method.into(),
                detail: other.to_string(),
            },
        }
    }

    /// The id of the chain the endpoint serves.
    pub(crate) async fn chain_id(&self) -> Result<u64, RpcError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| self.error("eth_chainId", e))
    }

    /// The next nonce of `address`, counting its transactions still in the pool.
    pub(crate) async fn pending_nonce(&self, address: Address) -> Result<u64, RpcError> {
        self.provider
            .get_transaction_count(address)
            .pending()
            .await
            .map_err(|e| self.error("eth_getTransactionCount", e))
    }

    /// The next nonce of `address` in the latest block: how many of its transactions are mined.
    pub(crate) async fn mined_nonce(&self, address: Address) -> Result<u64, RpcError> {
        self.provider
            .get_transaction_count(address)
            .latest()
            .await
            .map_err(|e| self.error("eth_getTransactionCount", e))
    }

    /// Whether transaction `hash`, sent by `from`, waits in the endpoint's pool (known, in no
    /// block yet).
    pub(crate) async fn in_pool(&self, hash: B256, from: Address) -> Result<bool, RpcError> {
        let transaction = self
            .provider
            .get_transaction_by_hash(hash)
            .await
            .map_err(|e| self.error("eth_getTransactionByHash", e))?;
        Ok(transaction.is_some_and(|tx| tx.block_number.is_none() && tx.inner.signer() == from))
    }

    /// The latest block's base fee; a network without one (before London) is refused, since
    /// EIP-1559 fees cannot be set on it.
    pub(crate) async fn base_fee(&self) -> Result<u128, AnchorError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| self.error("eth_getBlockByNumber", e))?
            .ok_or_else(|| self.missing("eth_getBlockByNumber", "latest block"))?;
        block
            .header
            .inner
            .base_fee_per_gas
            .map(u128::from)
            .ok_or_else(|| {
                AnchorError::Refused(format!(
                    "the Ethereum network behind {} has no base fee (not EIP-1559); anchoring needs London or later",
                    self.url
                ))
            })
    }

    /// Sends a signed transaction, its EIP-2718 encoding (`eth_sendRawTransaction`).
    pub(crate) async fn send(&self, raw: &[u8]) -> Result<(), RpcError> {
        self.provider
            .send_raw_transaction(raw)
            .await
            .map(|_pending| ())
            .map_err(|e| self.error("eth_sendRawTransaction", e))
    }

    /// The receipt of `hash`, if it is mined.
    pub(crate) async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, RpcError> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| self.error("eth_getTransactionReceipt", e))
    }

    /// The receipt of `hash` once it is mined, asking every `poll`; `None` if `within` passes
    /// first.
    pub(crate) async fn wait_receipt(
        &self,
        hash: B256,
        within: Duration,
        poll: Duration,
    ) -> Result<Option<TransactionReceipt>, RpcError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // A transaction already sent is worth waiting for through a passing outage:
            // an unreachable endpoint is asked again until the deadline.
            match self.receipt(hash).await {
                Ok(Some(receipt)) => return Ok(Some(receipt)),
                Ok(None) => {}
                Err(RpcError::Unreachable { .. })
                    if tokio::time::Instant::now() + poll <= deadline => {}
                Err(error) => return Err(error),
            }
            if tokio::time::Instant::now() + poll > deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// A call answered `null` where a value was required.
    pub(crate) fn missing(&self, method: &str, what: &str) -> RpcError {
        RpcError::Malformed {
            url: self.url.clone(),
            method: method.into(),
            detail: format!("no {what} in the answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How a made-up endpoint answers.
    #[derive(Clone, Copy)]
    enum Answer {
        /// A chain id, echoing the request's id.
        ChainId,
        /// A header announcing a body over the limit.
        AnnouncedTooLarge,
        /// A chunked body that never ends.
        Endless,
        /// A JSON-RPC error with an HTTP error status, as some providers send.
        RefusedWithErrorStatus,
        /// Bytes that are not JSON, with an error status or without.
        Junk { status: u16, bytes: usize },
        /// A redirect to another endpoint.
        Redirect { to: u16 },
    }

    /// Serves one HTTP request on a loopback port the way `answer` says; returns the URL.
    async fn serve(answer: Answer) -> Result<String, Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // The request: headers, then a body of Content-Length bytes.
            let body = loop {
                let Ok(read) = stream.read(&mut buffer).await else {
                    return;
                };
                if read == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|value| value.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break request[end + 4..end + 4 + length].to_vec();
                    }
                }
            };
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .map(|request| request["id"].clone())
                .unwrap_or_default();
            match answer {
                Answer::ChainId => {
                    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": "0x7a69"})
                        .to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                }
                Answer::RefusedWithErrorStatus => {
                    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "nonce too low"}}).to_string();
                    let head = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                }
                Answer::Junk { status, bytes } => {
                    let body = vec![b'x'; bytes];
                    let head = format!(
                        "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                }
                Answer::Redirect { to } => {
                    let head = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{to}/\r\ncontent-length: 0\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                }
                Answer::AnnouncedTooLarge => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        MAX_RESPONSE_BYTES + 1
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    // Then nothing: the client must not wait for the body.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Answer::Endless => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 1 << 20];
                    let framed = [
                        format!("{:x}\r\n", chunk.len()).into_bytes(),
                        chunk,
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    // Until the client hangs up.
                    while stream.write_all(&framed).await.is_ok() {}
                }
            }
        });
        Ok(url)
    }

    #[tokio::test]
    async fn answers_over_the_size_limit_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let options = EndpointOptions::default();
        let honest = Endpoint::new(&serve(Answer::ChainId).await?, &options)?;
        assert_eq!(honest.chain_id().await?, 31337);
        for answer in [Answer::AnnouncedTooLarge, Answer::Endless] {
            let endpoint = Endpoint::new(&serve(answer).await?, &options)?;
            let started = std::time::Instant::now();
            let error = endpoint
                .chain_id()
                .await
                .err()
                .ok_or("a huge answer was read")?;
            assert!(
                error.to_string().contains("larger than 33554432 bytes"),
                "{error}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "refused at once"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn refusals_junk_and_redirects() -> Result<(), Box<dyn std::error::Error>> {
        let options = EndpointOptions::default();
        // A JSON-RPC error under an HTTP error status is the node's refusal, with its message.
        let refusing = Endpoint::new(&serve(Answer::RefusedWithErrorStatus).await?, &options)?;
        let error = refusing
            .chain_id()
            .await
            .err()
            .ok_or("a refusal was taken as an answer")?;
        assert_eq!(error.refusal(), Some("nonce too low"), "{error}");
        // Junk is named, not copied whole into the message; an error status's body is read
        // only up to 64 KiB.
        for (status, bytes, expected) in [
            (200, 1 << 20, "(1048576 bytes)"),
            (500, 10_000, "HTTP error 500 with body: xxx"),
            (500, 1 << 20, "larger than 65536 bytes"),
        ] {
            let junk = Endpoint::new(&serve(Answer::Junk { status, bytes }).await?, &options)?;
            let error = junk
                .chain_id()
                .await
                .err()
                .ok_or("junk was taken as an answer")?;
            let message = error.to_string();
            assert!(message.len() < 2_000, "{} bytes", message.len());
            assert!(message.contains(expected), "{message}");
        }
        // A redirect is not followed: the endpoint is the configured URL.
        let elsewhere = serve(Answer::ChainId).await?;
        let port: u16 = elsewhere.rsplit(':').next().ok_or("port")?.parse()?;
        let redirecting = Endpoint::new(&serve(Answer::Redirect { to: port }).await?, &options)?;
        let error = redirecting
            .chain_id()
            .await
            .err()
            .ok_or("the redirect was followed")?;
        assert!(error.to_string().contains("HTTP error 307"), "{error}");
        Ok(())
    }

    #[test]
    fn urls() -> Result<(), RpcError> {
        let options = EndpointOptions::default();
        let keyed = Endpoint::new("https://mainnet.example.org/v3/SECRETKEY", &options)?;
        assert_eq!(keyed.url(), "https://mainnet.example.org/…");
        let local = Endpoint::new("http://127.0.0.1:8545", &options)?;
        assert_eq!(local.url(), "http://127.0.0.1:8545");
        assert!(Endpoint::new("http://127.0.0.1:8545", &options).is_ok());
        assert!(Endpoint::new("https://mainnet.example.org/v3/key", &options).is_ok());
        assert!(Endpoint::new("ftp://example.org", &options).is_err());
        assert!(Endpoint::new("127.0.0.1:8545", &options).is_err());
        let missing_ca = EndpointOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..EndpointOptions::default()
        };
        assert!(matches!(
            Endpoint::new("https://example.org", &missing_ca),
            Err(RpcError::Certificate { .. })
        ));
        Ok(())
    }
}
