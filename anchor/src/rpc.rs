//! A minimal Ethereum JSON-RPC client over plain HTTP/1.1 (`http://host:port/path`): the node
//! the user points at, usually on loopback or inside their network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Value, json};

/// Largest JSON-RPC answer read (a block with its transactions).
const MAX_ANSWER: u64 = 16 << 20;

/// JSON-RPC failures.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The URL is not `http://host:port[/path]`.
    #[error("invalid Ethereum RPC URL {0:?}: use http://HOST:PORT[/PATH]")]
    Url(String),
    /// Connection refused, reset or timed out.
    #[error("cannot reach the Ethereum node at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The node answered with a JSON-RPC error.
    #[error("the Ethereum node refused {method}: {message}")]
    Refused { method: String, message: String },
    /// The answer is not what JSON-RPC promises.
    #[error("unreadable answer from the Ethereum node to {method}: {detail}")]
    Malformed { method: String, detail: String },
}

/// An Ethereum node's JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Rpc {
    url: String,
    host: String,
    path: String,
}

impl Rpc {
    /// Parses `http://host:port[/path]`.
    pub(crate) fn new(url: &str) -> Result<Self, RpcError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| RpcError::Url(url.into()))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() || !host.contains(':') {
            return Err(RpcError::Url(url.into()));
        }
        Ok(Self {
            url: url.into(),
            host: host.into(),
            path: path.into(),
        })
    }

    /// Calls `method` with `params`; returns the `result`.
    pub(crate) fn call(&self, method: &str, params: &Value) -> Result<Value, RpcError> {
        let unreachable = |e: std::io::Error| RpcError::Unreachable {
            url: self.url.clone(),
            message: e.to_string(),
        };
        let malformed = |detail: String| RpcError::Malformed {
            method: method.into(),
            detail,
        };
        let address = self
            .host
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| RpcError::Url(self.url.clone()))?;
        let mut stream =
            TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(unreachable)?;
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        write!(
            stream,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.host,
            body.len()
        )
        .map_err(unreachable)?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .map_err(unreachable)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| malformed("no HTTP header".into()))?;
        let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
        let mut body = answer[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body).ok_or_else(|| malformed("bad chunked body".into()))?;
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
        if let Some(error) = value.get("error") {
            return Err(RpcError::Refused {
                method: method.into(),
                message: error["message"].as_str().unwrap_or("unknown error").into(),
            });
        }
        value
            .get("result")
            .cloned()
            .ok_or_else(|| malformed("no result".into()))
    }

    /// Calls `method` and reads a `0x` quantity.
    pub(crate) fn quantity(&self, method: &str, params: &Value) -> Result<u64, RpcError> {
        let value = self.call(method, params)?;
        parse_quantity(&value).ok_or_else(|| RpcError::Malformed {
            method: method.into(),
            detail: format!("{value} is not a quantity"),
        })
    }
}

/// A `0x`-prefixed hex quantity.
pub(crate) fn parse_quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_quantities() {
        assert!(Rpc::new("http://127.0.0.1:8545").is_ok());
        assert!(Rpc::new("http://localhost:8545/rpc").is_ok());
        assert!(Rpc::new("https://example.org").is_err());
        assert!(Rpc::new("http://nohost").is_err());
        assert_eq!(parse_quantity(&json!("0x10")), Some(16));
        assert_eq!(parse_quantity(&json!("16")), None);
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
    }
}
