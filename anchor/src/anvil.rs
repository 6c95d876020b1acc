//! Finding anvil, the local Ethereum node that a testnet anchors in (`chainiac testnet up
//! --anvil`) and the anchoring tests run against.

use std::path::PathBuf;

/// Where `.ci/run` and the set-up install anvil, below the home directory.
const INSTALLED: &str =
    ".cache/chainiac-tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// anvil was not found.
#[derive(Debug, thiserror::Error)]
#[error(
    "anvil not found; install it with `npm install --prefix ~/.cache/chainiac-tools @foundry-rs/anvil-linux-amd64` or set CHAINIAC_ANVIL"
)]
pub struct AnvilNotFound;

/// Where anvil is: `CHAINIAC_ANVIL`, `anvil` on `PATH`, or where `.ci/run` installs it.
pub fn anvil_binary() -> Result<PathBuf, AnvilNotFound> {
    if let Ok(path) = std::env::var("CHAINIAC_ANVIL") {
        return Ok(path.into());
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("anvil"))
            .find(|candidate| candidate.is_file())
    }) {
        return Ok(found);
    }
    let installed = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(INSTALLED);
    if installed.is_file() {
        return Ok(installed);
    }
    Err(AnvilNotFound)
}
