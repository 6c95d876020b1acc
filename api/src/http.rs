//! A blocking HTTP client (plain `http://`, through [`ureq`]) for a node's JSON API, which
//! listens on loopback or a trusted local address (no TLS, no proxy, no redirects), with
//! failover between nodes: when a node is down or cannot gather its witnesses, another roster
//! member takes over as leader.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::{Method, Request, header};

use crate::keyfile::ApiToken;

/// Largest answer read from the API.
const MAX_ANSWER: u64 = 512 << 20;

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node may stay silent while answering (it may be gathering its witnesses).
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call failed: the node could not be reached (another node may take over), or it
/// answered with an error (it did the work and refused).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection refused, reset or timed out.
    #[error("cannot reach the node's API at {address}: {source}")]
    Unreachable {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The node answered an HTTP error.
    #[error("the node at {address} answered {status}: {message}")]
    Status {
        address: SocketAddr,
        status: u16,
        message: String,
    },
    /// The answer is not HTTP or not JSON.
    #[error("the node at {address} answered something unreadable: {detail}")]
    Malformed { address: SocketAddr, detail: String },
}

impl CallError {
    /// Whether another node should be tried: the node is down or cannot gather witnesses.
    pub fn is_node_failure(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status == 503 || *status >= 500,
            Self::Malformed { .. } => false,
        }
    }
}

/// An HTTP client for one call: HTTP error statuses are answers (not errors), no proxy from
/// the environment (the API is local), no redirects.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .into()
}

/// The [`CallError`] for a failed exchange with the node at `address`.
fn failure(address: SocketAddr, error: ureq::Error) -> CallError {
    let unreachable = |source| CallError::Unreachable { address, source };
    match error {
        ureq::Error::Io(source) => unreachable(source),
        error @ ureq::Error::Timeout(_) => {
            unreachable(io::Error::new(io::ErrorKind::TimedOut, error))
        }
        error @ (ureq::Error::Protocol(_)
        | ureq::Error::LargeResponseHeader(..)
        | ureq::Error::BodyExceedsLimit(_)
        | ureq::Error::Http(_)
        | ureq::Error::BadUri(_)) => CallError::Malformed {
            address,
            detail: error.to_string(),
        },
        error => unreachable(io::Error::other(error)),
    }
}

/// One call to the API at `address`, with the bearer `token` if given (writes need it).
pub fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    token: Option<&ApiToken>,
) -> Result<Vec<u8>, CallError> {
    let malformed = |detail: String| CallError::Malformed { address, detail };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|e| malformed(format!("cannot make the request: {e}")))?;
    // POST, PUT and PATCH always carry a body (maybe empty); the others only a non-empty one.
    let with_body = !body.is_empty()
        || method == Method::POST
        || method == Method::PUT
        || method == Method::PATCH;
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header(header::CONTENT_TYPE, content_type);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.as_str()));
    }
    let agent = agent();
    let answer = if with_body {
        request.body(body).map(|request| agent.run(request))
    } else {
        request.body(()).map(|request| agent.run(request))
    };
    let mut response = answer
        .map_err(|e| malformed(format!("cannot make the request: {e}")))?
        .map_err(|e| failure(address, e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| failure(address, e))?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<crate::types::ErrorJson>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(CallError::Status {
            address,
            status,
            message,
        });
    }
    Ok(body)
}

fn parse<T: DeserializeOwned>(address: SocketAddr, body: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(body).map_err(|e| CallError::Malformed {
        address,
        detail: e.to_string(),
    })
}

/// GET returning JSON.
pub fn get_json<T: DeserializeOwned>(address: SocketAddr, path: &str) -> Result<T, CallError> {
    parse(
        address,
        &call(address, "GET", path, "application/json", b"", None)?,
    )
}

/// POST a JSON body with the API `token`, returning JSON.
pub fn post_json<B: Serialize, T: DeserializeOwned>(
    address: SocketAddr,
    path: &str,
    body: &B,
    token: Option<&ApiToken>,
) -> Result<T, CallError> {
    let body = serde_json::to_vec(body).map_err(|e| CallError::Malformed {
        address,
        detail: format!("cannot encode the request: {e}"),
    })?;
    parse(
        address,
        &call(address, "POST", path, "application/json", &body, token)?,
    )
}

/// PUT raw bytes with the API `token`, returning JSON.
pub fn put_bytes<T: DeserializeOwned>(
    address: SocketAddr,
    path: &str,
    bytes: &[u8],
    token: Option<&ApiToken>,
) -> Result<T, CallError> {
    parse(
        address,
        &call(
            address,
            "PUT",
            path,
            "application/octet-stream",
            bytes,
            token,
        )?,
    )
}

/// Why no node did what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// No node address was given.
    #[error("no node API address given; use --node 127.0.0.1:PORT (or CHAINIAC_NODES)")]
    NoNode,
    /// A node did the work and refused: another node would refuse too.
    #[error("the node refused: {0}")]
    Refused(CallError),
    /// Every node was down or could not gather its witnesses; each failure is kept.
    #[error("every node failed:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    AllFailed(Vec<CallError>),
}

/// Runs `operation` against each node in turn until one succeeds: if a node is down or cannot
/// gather its witnesses, the next takes over (`on_failover` hears about each node left behind
/// for another).
pub fn with_failover<T>(
    nodes: &[SocketAddr],
    mut operation: impl FnMut(SocketAddr) -> Result<T, CallError>,
    on_failover: &mut dyn FnMut(&CallError),
) -> Result<T, FailoverError> {
    if nodes.is_empty() {
        return Err(FailoverError::NoNode);
    }
    let mut failures = Vec::new();
    for (position, &node) in nodes.iter().enumerate() {
        match operation(node) {
            Ok(value) => return Ok(value),
            Err(error) if error.is_node_failure() => {
                if position + 1 < nodes.len() {
                    on_failover(&error);
                }
                failures.push(error);
            }
            Err(error) => return Err(FailoverError::Refused(error)),
        }
    }
    Err(FailoverError::AllFailed(failures))
}

/// Called for each node left behind by a failover.
pub type FailoverNotice = std::sync::Arc<dyn Fn(&CallError) + Send + Sync>;

/// The node APIs a client may use, in order: the first that is up and can gather its witnesses
/// does the work.
#[derive(Clone)]
pub struct Nodes {
    addresses: Vec<SocketAddr>,
    notice: Option<FailoverNotice>,
    token: Option<ApiToken>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl Nodes {
    /// The nodes at `addresses`, failing over silently.
    pub fn new(addresses: &[SocketAddr]) -> Self {
        Self {
            addresses: addresses.to_vec(),
            notice: None,
            token: None,
        }
    }

    /// The same nodes, with the API token their writes need.
    pub fn with_token(mut self, token: Option<ApiToken>) -> Self {
        self.token = token;
        self
    }

    /// The API token, if any.
    pub fn token(&self) -> Option<&ApiToken> {
        self.token.as_ref()
    }

    /// The same nodes, telling `notice` about each node left behind.
    pub fn with_notice(mut self, notice: FailoverNotice) -> Self {
        self.notice = Some(notice);
        self
    }

    /// These nodes, or `fallback` if none was given (with the same notice).
    pub fn or(&self, fallback: &[SocketAddr]) -> Self {
        if self.addresses.is_empty() {
            Self {
                addresses: fallback.to_vec(),
                notice: self.notice.clone(),
                token: self.token.clone(),
            }
        } else {
            self.clone()
        }
    }

    /// The addresses, in the order they are tried.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Runs `operation` on each node in turn until one succeeds ([`with_failover`]).
    pub fn run<T>(
        &self,
        operation: impl FnMut(SocketAddr) -> Result<T, CallError>,
    ) -> Result<T, FailoverError> {
        let mut notice = |error: &CallError| {
            if let Some(notice) = &self.notice {
                notice(error);
            }
        };
        with_failover(&self.addresses, operation, &mut notice)
    }

    /// GET `path` as JSON from the first node that answers.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, FailoverError> {
        self.run(|node| get_json(node, path))
    }

    /// POST `body` to `path` on the first node that does the work.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, FailoverError> {
        self.run(|node| post_json(node, path, body, self.token.as_ref()))
    }
}
