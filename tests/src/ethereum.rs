//! Ethereum test kit: fresh anchoring keys funded from anvil's development account (the node
//! signs with them; no unlocked account is used), JSON-RPC calls to anvil for the tests' own
//! inspection and control, and a TLS-terminating proxy with its own certificate authority in
//! front of anvil, to test `https://` endpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::TestResult;

/// Makes a plain anchoring key at `dir/name` and funds its address with 100 ETH from anvil's
/// first development account (a transfer signed locally). Returns the key file and address.
pub async fn funded_key(anvil_url: &str, dir: &Path, name: &str) -> TestResult<(PathBuf, String)> {
    let path = dir.join(name);
    let address = chainiac_anchor::create_key(&path, None)?;
    chainiac_anchor::fund_from_dev_account(
        anvil_url,
        address,
        100 * 1_000_000_000 * chainiac_anchor::GWEI,
    )
    .await?;
    Ok((path, format!("{address:#x}")))
}

/// One JSON-RPC call to an Ethereum node (the test's own inspection and anvil control; the
/// code under test uses its own client).
pub fn eth_rpc(url: &str, method: &str, params: &Value) -> TestResult<Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let address = url.trim_start_matches("http://").parse()?;
    let (status, answer) = crate::http(address, "POST", "/", Some(&body))?;
    if status != 200 || answer.get("error").is_some() {
        return Err(format!("{method} failed ({status}): {answer}").into());
    }
    Ok(answer["result"].clone())
}

/// A `0x` hex quantity.
pub fn quantity(value: &Value) -> TestResult<u64> {
    Ok(u64::from_str_radix(
        value
            .as_str()
            .ok_or("not a quantity")?
            .trim_start_matches("0x"),
        16,
    )?)
}

/// A TLS-terminating proxy on 127.0.0.1 forwarding to a plain TCP port, with a certificate for
/// `localhost` issued by a fresh certificate authority; stopped when dropped.
pub struct TlsProxy {
    /// `https://localhost:PORT`.
    pub url: String,
    /// The authority's certificate (PEM), to trust.
    pub ca_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Starts the proxy in front of `127.0.0.1:target`, writing its authority to `dir`.
    pub async fn start(target: u16, dir: &Path) -> TestResult<Self> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chainiac test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])?
            .signed_by(&leaf_key, &ca, &ca_key)?;
        let ca_file = dir.join("test-ca.pem");
        std::fs::write(&ca_file, ca.pem())?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Ok(Self {
            url: format!("https://localhost:{port}"),
            ca_file,
            task,
        })
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
