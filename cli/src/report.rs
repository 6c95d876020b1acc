//! How the `chainiac` binary reports a failure: `error: WHAT`, then each cause that adds
//! something (a cause whose text the lines above already say is left out), then a `hint:` line
//! where the program knows the next step. No stack trace unless asked for (`-v`, or
//! `CHAINIAC_BACKTRACE=1`), whatever `RUST_BACKTRACE` says. The exit code tells scripts what
//! kind of failure it was.

use std::io::ErrorKind;
use std::process::ExitCode;

use chainiac_api::http::{CallError, FailoverError};
use chainiac_api::keyfile::IdentityError;
use chainiac_cli::publisher::PublisherError;
use chainiac_client::ClientError;
use chainiac_node::config::ConfigError;

/// Exit codes, as documented in docs/operator.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything else: a file missing or unreadable, bad input, a local failure.
    Failure = 1,
    /// The command line itself is wrong (clap exits with this code too).
    Usage = 2,
    /// No node or peer could be reached.
    Unreachable = 3,
    /// A node answered and refused (a rule, too few witnesses, a conflict).
    Refused = 4,
    /// Something fetched failed verification (a proof, a signature, a timeline, an artifact).
    Verification = 5,
}

/// The lines of the report: the error, then each cause that adds information.
pub(crate) fn lines(error: &anyhow::Error) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || lines.iter().any(|line| line.contains(text)) {
            continue;
        }
        lines.push(text.to_owned());
    }
    lines
}

/// What kind of failure `error` is.
pub(crate) fn exit_of(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(call) = cause.downcast_ref::<CallError>() {
            return match call {
                CallError::Unreachable { .. } => Exit::Unreachable,
                CallError::Status { .. } => Exit::Refused,
                CallError::Malformed { .. } => Exit::Failure,
            };
        }
        if let Some(failover) = cause.downcast_ref::<FailoverError>() {
            return match failover {
                FailoverError::NoNode => Exit::Usage,
                FailoverError::Refused(_) => Exit::Refused,
                FailoverError::AllFailed(failures) => {
                    if failures
                        .iter()
                        .all(|f| matches!(f, CallError::Unreachable { .. }))
                    {
                        Exit::Unreachable
                    } else {
                        Exit::Refused
                    }
                }
            };
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return match client {
                ClientError::NoPeer => Exit::Usage,
                ClientError::Unreachable { .. } | ClientError::Network(_) => Exit::Unreachable,
                ClientError::AllPeersFailed(_) | ClientError::Invalid(_) => Exit::Verification,
                ClientError::Download(download) => {
                    if download.failures.iter().any(|f| f.sent_bad_data) {
                        Exit::Verification
                    } else {
                        Exit::Unreachable
                    }
                }
                _ => Exit::Failure,
            };
        }
        if let Some(error) = cause.downcast_ref::<chainiac_protocol::Error>() {
            // A hash typed wrong is the user's input, not something that failed to verify.
            return match error {
                chainiac_protocol::Error::InvalidHex { .. } => Exit::Failure,
                _ => Exit::Verification,
            };
        }
    }
    Exit::Failure
}

/// The next step, where the program knows it.
pub(crate) fn hint_of(error: &anyhow::Error) -> Option<String> {
    for cause in error.chain() {
        if let Some(ConfigError::Io { source, .. }) = cause.downcast_ref::<ConfigError>()
            && source.kind() == ErrorKind::NotFound
        {
            return Some(
                "`chainiac node init --dir DIR` creates a node and its DIR/config.toml".into(),
            );
        }
        if let Some(IdentityError::Io { source, .. }) = cause.downcast_ref::<IdentityError>()
            && source.kind() == ErrorKind::NotFound
        {
            return Some(
                "key files are made by `chainiac node init` (node keys) and `chainiac project create` (project keys); check the path".into(),
            );
        }
        if let Some(call) = cause.downcast_ref::<CallError>() {
            return match call {
                CallError::Unreachable { address, .. } => Some(format!(
                    "is the node running? start it with `chainiac node run --config DIR/config.toml`, or give the address of one that runs (`--node`); {address} did not answer"
                )),
                _ => None,
            };
        }
        if let Some(FailoverError::AllFailed(failures)) = cause.downcast_ref::<FailoverError>()
            && failures
                .iter()
                .all(|f| matches!(f, CallError::Unreachable { .. }))
        {
            return Some(
                "no node answered: start them (`chainiac testnet up` for a local testnet) or give running ones with --node".into(),
            );
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return match client {
                ClientError::Unreachable { .. } => Some(
                    "check the peer addresses (`chainiac testnet status` lists a local testnet's) and that the nodes run".into(),
                ),
                ClientError::NoPeer => Some(
                    "give a node's address with --peer /ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID; the client remembers it".into(),
                ),
                _ => None,
            };
        }
        if let Some(PublisherError::Malformed { what, .. }) = cause.downcast_ref::<PublisherError>()
        {
            return match *what {
                "a release bundle" => Some(
                    "a bundle is the JSON file `chainiac release create --out FILE` writes".into(),
                ),
                "a roster file" => Some(
                    "a roster file is a JSON list of node.pub.json entries (`chainiac testnet up` writes DIR/roster.json)".into(),
                ),
                _ => None,
            };
        }
    }
    None
}

/// Prints the report of `error` on standard error and returns the exit code.
pub(crate) fn report(error: &anyhow::Error, verbose: bool) -> ExitCode {
    let lines = lines(error);
    let mut out = String::new();
    let mut lines = lines.iter();
    if let Some(first) = lines.next() {
        out.push_str(&format!("error: {first}\n"));
    }
    for line in lines {
        out.push_str(&format!("  caused by: {line}\n"));
    }
    if let Some(hint) = hint_of(error) {
        out.push_str(&format!("hint: {hint}\n"));
    }
    if verbose {
        out.push_str(&format!("\n{}\n", error.backtrace()));
    }
    eprint!("{out}");
    ExitCode::from(exit_of(error) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_repeats_the_error_is_left_out() {
        let io = std::io::Error::new(
            ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let error = anyhow::Error::new(ConfigError::Io {
            path: "/nonexistent.toml".into(),
            source: io,
        });
        let lines = lines(&error);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("/nonexistent.toml"));
        assert!(hint_of(&error).is_some_and(|h| h.contains("chainiac node init")));
        assert_eq!(exit_of(&error), Exit::Failure);
    }

    #[test]
    fn exit_codes_follow_the_kind_of_failure() {
        let unreachable = anyhow::Error::new(CallError::Unreachable {
            address: "127.0.0.1:1".parse().expect("address"),
            source: std::io::Error::new(ErrorKind::ConnectionRefused, "refused"),
        });
        assert_eq!(exit_of(&unreachable), Exit::Unreachable);
        let refused = anyhow::Error::new(CallError::Status {
            address: "127.0.0.1:1".parse().expect("address"),
            status: 400,
            message: "release refused".into(),
        });
        assert_eq!(exit_of(&refused), Exit::Refused);
        let invalid = anyhow::Error::new(chainiac_protocol::Error::WrongChain);
        assert_eq!(exit_of(&invalid), Exit::Verification);
        assert_eq!(exit_of(&anyhow::anyhow!("something")), Exit::Failure);
    }
}
