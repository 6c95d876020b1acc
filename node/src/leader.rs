//! The leader side of an append: propose the next block, run one signing round per forward link
//! with the roster of the link's source block, exclude witnesses that time out or answer wrongly
//! and restart without them, then store the block.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Aggregator, Contribution, Roster};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::{ForwardLink, LinkRequest, SkipBlock};
use futures::future::join_all;

use crate::wire::{Request, Response};

/// A boxed future, for the witness transport.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the leader reaches witnesses (the network, or the local witness for itself).
pub trait WitnessTransport: Send + Sync {
    /// Sends `request` to the witness with key `witness`.
    fn call(&self, witness: PublicKey, request: Request)
    -> BoxFuture<'_, Result<Response, String>>;
}

/// Timeouts and retry bounds of signing rounds.
#[derive(Clone, Copy, Debug)]
pub struct RoundConfig {
    /// How long to wait for a commitment.
    pub commit_timeout: Duration,
    /// How long to wait for a response share.
    pub respond_timeout: Duration,
}

impl Default for RoundConfig {
    fn default() -> Self {
        Self {
            commit_timeout: Duration::from_secs(5),
            respond_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an append failed. Nothing is stored when it does.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Too few witnesses could sign.
    #[error(
        "not enough witnesses for block {index} (link level {level}): {available} of {roster} can sign but {threshold} must; unreachable or refusing: {unreachable}; excluded for wrong answers: {wrong}. Bring witnesses back online and retry"
    )]
    NotEnoughWitnesses {
        index: u64,
        level: u32,
        available: usize,
        roster: usize,
        threshold: usize,
        unreachable: String,
        wrong: String,
    },
    /// The block or store refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What happened to each witness in a round, for logs and errors.
#[derive(Debug, Default, Clone)]
pub struct RoundReport {
    /// Witnesses that did not answer or refused, with the reason.
    pub unreachable: Vec<(PublicKey, String)>,
    /// Witnesses excluded because their share was wrong.
    pub wrong: Vec<PublicKey>,
    /// Attempts made.
    pub attempts: u32,
}

/// Who is left out of the next attempt, and why.
struct Exclusions {
    excluded: BTreeSet<usize>,
    report: RoundReport,
}

impl Exclusions {
    fn unreachable(&mut self, index: usize, key: PublicKey, reason: String) {
        self.excluded.insert(index);
        self.report.unreachable.push((key, reason));
    }

    fn wrong(&mut self, index: usize, key: PublicKey) {
        self.excluded.insert(index);
        self.report.wrong.push(key);
    }
}

fn describe(keys: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = keys.collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Runs signing rounds for the link `request` into `block`, signed by `roster`, until a
/// signature is produced or too few witnesses remain.
pub async fn sign_link(
    transport: &dyn WitnessTransport,
    roster: &Roster,
    block: &SkipBlock,
    request: &LinkRequest,
    config: RoundConfig,
) -> Result<(ForwardLink, RoundReport), AppendError> {
    let mut out = Exclusions {
        excluded: BTreeSet::new(),
        report: RoundReport::default(),
    };
    loop {
        out.report.attempts += 1;
        let round = Hash::of(
            "chainiac v1 round id",
            &[
                request.message.as_bytes(),
                &out.report.attempts.to_le_bytes(),
                &rand_bytes(),
            ],
        );
        let candidates: Vec<usize> = (0..roster.len())
            .filter(|i| !out.excluded.contains(i))
            .collect();
        let not_enough = |report: &RoundReport, available: usize| AppendError::NotEnoughWitnesses {
            index: block.index(),
            level: request.level,
            available,
            roster: roster.len(),
            threshold: roster.threshold(),
            unreachable: describe(
                report
                    .unreachable
                    .iter()
                    .map(|(k, why)| format!("{} ({why})", &k.to_hex()[..16])),
            ),
            wrong: describe(report.wrong.iter().map(|k| k.to_hex()[..16].to_string())),
        };
        if candidates.len() < roster.threshold() {
            return Err(not_enough(&out.report, candidates.len()));
        }
        // Commit.
        let commits = join_all(candidates.iter().map(|&index| {
            let key = roster.members()[index].key;
            let request = Request::Commit {
                round,
                block: Box::new(block.clone()),
                level: request.level,
            };
            async move {
                (
                    index,
                    key,
                    call(transport, key, request, config.commit_timeout).await,
                )
            }
        }))
        .await;
        let message = request.message;
        let mut aggregator = Aggregator::new(roster, message.as_bytes());
        let mut committed = Vec::new();
        for (index, key, answer) in commits {
            match answer {
                Ok(Response::Committed(commitment)) => {
                    if aggregator
                        .add_commitment(&Contribution::single(roster, index, &commitment))
                        .is_ok()
                    {
                        committed.push((index, key));
                    } else {
                        out.wrong(index, key);
                    }
                }
                Ok(other) => {
                    out.unreachable(index, key, refusal_text(&other));
                }
                Err(error) => {
                    out.unreachable(index, key, error);
                }
            }
        }
        if committed.len() < roster.threshold() {
            return Err(not_enough(&out.report, committed.len()));
        }
        let challenge = aggregator
            .challenge()
            .map_err(crate::store::StoreError::from)?;
        // Respond.
        let answers = join_all(committed.iter().map(|&(index, key)| {
            let request = Request::Respond {
                round,
                challenge: challenge.clone(),
            };
            async move {
                (
                    index,
                    key,
                    call(transport, key, request, config.respond_timeout).await,
                )
            }
        }))
        .await;
        for (index, key, answer) in answers {
            match answer {
                Ok(Response::Responded(share)) if share.origin as usize == index => {
                    if aggregator.add_response(&share).is_err() {
                        out.wrong(index, key);
                    }
                }
                Ok(other) => {
                    out.unreachable(index, key, refusal_text(&other));
                }
                Err(error) => {
                    out.unreachable(index, key, error);
                }
            }
        }
        if aggregator
            .missing()
            .iter()
            .any(|index| out.excluded.contains(index))
        {
            tracing::info!(
                block = block.index(),
                level = request.level,
                "restarting the round without unresponsive witnesses"
            );
            continue;
        }
        match aggregator.finish() {
            Ok(signature) => {
                let link = ForwardLink {
                    chain_id: block.chain_id(),
                    from: request.from,
                    to: request.to,
                    level: request.level,
                    signature,
                };
                return Ok((link, out.report));
            }
            Err(chainiac_protocol::Error::InvalidResponses { culprits }) => {
                for index in culprits {
                    let key = roster.members()[index].key;
                    tracing::warn!(witness = %key, block = block.index(), "witness answered with a wrong response share; excluded");
                    out.wrong(index, key);
                }
            }
            Err(error) => return Err(crate::store::StoreError::from(error).into()),
        }
    }
}

fn refusal_text(response: &Response) -> String {
    match response {
        Response::Refused(reason) => format!("refused: {reason}"),
        _ => "unexpected answer".into(),
    }
}

async fn call(
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

fn rand_bytes() -> [u8; 16] {
    use rand::RngExt;
    rand::rng().random()
}
