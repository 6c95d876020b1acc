//! A minimal HTTP/1.1 client for the node's own loopback JSON API (no TLS, no redirects: the
//! API only listens on trusted local addresses).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Largest answer read from the API.
const MAX_ANSWER: u64 = 512 << 20;

/// Why a call failed: the node could not be reached (another node may take over), or it
/// answered with an error (it did the work and refused).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
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
    pub(crate) fn is_node_failure(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status == 503 || *status >= 500,
            Self::Malformed { .. } => false,
        }
    }
}

/// One call to the API at `address`.
pub(crate) fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<u8>, CallError> {
    let unreachable = |source| CallError::Unreachable { address, source };
    let malformed = |detail: String| CallError::Malformed { address, detail };
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(unreachable)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .map_err(unreachable)?;
    stream.write_all(body).map_err(unreachable)?;
    let mut response = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut response)
        .map_err(unreachable)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no HTTP header".into()))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad status line {:?}", head.lines().next())))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| malformed("bad chunked body".into()))?;
    }
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(CallError::Status {
            address,
            status,
            message,
        });
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// GET returning JSON.
pub(crate) fn get_json(address: SocketAddr, path: &str) -> Result<Value, CallError> {
    let body = call(address, "GET", path, "application/json", b"")?;
    serde_json::from_slice(&body).map_err(|e| CallError::Malformed {
        address,
        detail: e.to_string(),
    })
}

/// POST a JSON body, returning JSON.
pub(crate) fn post_json(address: SocketAddr, path: &str, body: &Value) -> Result<Value, CallError> {
    let body = call(
        address,
        "POST",
        path,
        "application/json",
        body.to_string().as_bytes(),
    )?;
    serde_json::from_slice(&body).map_err(|e| CallError::Malformed {
        address,
        detail: e.to_string(),
    })
}

/// PUT raw bytes, returning JSON.
pub(crate) fn put_bytes(address: SocketAddr, path: &str, bytes: &[u8]) -> Result<Value, CallError> {
    let body = call(address, "PUT", path, "application/octet-stream", bytes)?;
    serde_json::from_slice(&body).map_err(|e| CallError::Malformed {
        address,
        detail: e.to_string(),
    })
}

/// Runs `operation` against each node in turn until one succeeds: if a node is down or cannot
/// gather its witnesses, another roster member takes over as leader.
pub(crate) fn with_failover<T>(
    nodes: &[SocketAddr],
    mut operation: impl FnMut(SocketAddr) -> Result<T, CallError>,
) -> anyhow::Result<T> {
    if nodes.is_empty() {
        bail!("no node API address given; use --node 127.0.0.1:PORT (or CHAINIAC_NODES)");
    }
    let mut failures = Vec::new();
    for &node in nodes {
        match operation(node) {
            Ok(value) => return Ok(value),
            Err(error) if error.is_node_failure() => {
                eprintln!("  node {node} failed ({error}); trying the next node");
                failures.push(error.to_string());
            }
            Err(error) => return Err(error).context("the node refused"),
        }
    }
    bail!("every node failed:\n  {}", failures.join("\n  "))
}
