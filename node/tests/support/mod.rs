//! Helpers shared by the node crate's integration tests (each test file includes this module).

#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The longest a test waits for something it expects to happen.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request to a node's API; the status and the body as JSON (`Null` if the body
/// is not JSON).
pub(crate) fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed response")?;
    let status: u16 = head.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
pub(crate) fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> TestResult {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("timed out waiting until {what}").into())
}
