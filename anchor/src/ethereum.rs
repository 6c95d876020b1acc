//! The Ethereum backend: one EIP-1559 transaction per anchored timeline block, signed here
//! with the node's own key and sent with `eth_sendRawTransaction`, from the anchoring account
//! to itself, carrying [`anchor_calldata`] (88 bytes: 24,310 gas measured on anvil under the
//! Prague calldata floor, whatever the number of projects). A transaction that is not mined
//! in time is replaced by one with the same nonce and higher fees, never duplicated; the fees
//! stay under the operator's ceiling and daily cap. Once mined, the block's transactions and
//! receipts are fetched and the self-contained [`AnchorEvidence`] is built and checked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::consensus::{Transaction as _, TxEnvelope};
use alloy::eips::BlockId;
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use chainiac_protocol::anchor::AnchorAccount;

use crate::endpoint::{Endpoint, EndpointOptions, RpcError};
use crate::evidence::{build_evidence, verify_evidence};
use crate::fees::{FeePolicy, FeeRefusal, Fees};
use crate::journal::{Journal, Pending};
use crate::transaction::UnsignedTransaction;
use crate::{AccountStatus, Anchor, AnchorError, BoxFuture, Confirmation};
use crate::{AnchorProof, AnchorRequest, anchor_calldata};

/// A roster member's statement that an address is its anchoring account on a chain, sending
/// to a recipient (itself, or the event contract): `(chain id, address, recipient)`.
pub type Voucher = Arc<dyn Fn(u64, [u8; 20], [u8; 20]) -> AnchorAccount + Send + Sync>;

/// Most gas an anchoring transaction may be given: it takes about 25,000; an endpoint that
/// estimates more is not believed (the worst case would eat the daily cap).
const MAX_ANCHOR_GAS: u64 = 100_000;

/// What became of a pending transaction's versions.
enum Mined {
    /// One is in a block canonical on every endpoint: its proof.
    Proven(Box<AnchorProof>),
    /// One is in a block, not (yet) provable or canonical everywhere: wait, do not replace.
    InUnprovenBlock,
    /// None is in a block.
    Nowhere,
}

/// Where a timeline block's first transaction goes: a nonce of its own, or the nonce of an
/// earlier block's transaction it replaces.
struct FreshSlot {
    nonce: u64,
    fees: Fees,
    /// Least gas limit: the replaced transaction's.
    gas_floor: u64,
    /// The journal entry of the replaced transaction, forgotten once this one is journaled.
    replaces: Option<Pending>,
}

/// Settings of the Ethereum backend.
#[derive(Clone, Debug)]
pub struct EthereumConfig {
    /// JSON-RPC endpoints (`http(s)://...`): the first sends; every one must agree that an
    /// anchor's block is canonical.
    pub endpoints: Vec<String>,
    /// Timeouts and extra certificate authorities.
    pub endpoint_options: EndpointOptions,
    /// Fee ceiling and daily cap.
    pub fees: FeePolicy,
    /// A transaction not mined after this long is replaced with higher fees (same nonce).
    pub replace_after: Duration,
    /// How long one attempt waits for its transaction (it stays pending, and the next attempt
    /// picks it up).
    pub mined_timeout: Duration,
    /// Where sent transactions and spending are journaled; in memory only if `None`.
    pub journal: Option<PathBuf>,
    /// How often receipts are polled.
    pub poll_interval: Duration,
    /// Anchor through this event contract (`chainiac anchor deploy`) instead of a transaction
    /// to the account itself.
    pub contract: Option<Address>,
    /// The chain the endpoints must serve (1 for Ethereum mainnet): the node signs for no
    /// other, whatever an endpoint says.
    pub expected_chain_id: Option<u64>,
}

impl EthereumConfig {
    /// Settings for one endpoint with default fees and timings.
    pub fn new(rpc: &str) -> Self {
        Self {
            endpoints: vec![rpc.into()],
            endpoint_options: EndpointOptions::default(),
            fees: FeePolicy::default(),
            replace_after: Duration::from_secs(120),
            mined_timeout: Duration::from_secs(600),
            journal: None,
            poll_interval: Duration::from_millis(250),
            contract: None,
            expected_chain_id: None,
        }
    }
}

/// The key transactions are signed with, and the member vouching for its address.
struct Sender {
    signer: PrivateKeySigner,
    voucher: Voucher,
    /// Where the transactions go: the account itself or the event contract.
    recipient: Address,
}

impl Sender {
    fn account(&self, chain_id: u64) -> AnchorAccount {
        (self.voucher)(
            chain_id,
            self.signer.address().into(),
            self.recipient.into(),
        )
    }
}

/// Anchors in Ethereum through JSON-RPC endpoints.
pub struct EthereumAnchor {
    endpoints: Vec<Endpoint>,
    config: EthereumConfig,
    sender: Option<Sender>,
    journal: Mutex<Journal>,
}

impl std::fmt::Debug for EthereumAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthereumAnchor")
            .field("config", &self.config)
            .field("account", &self.sender.as_ref().map(|s| s.signer.address()))
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex0x(hash: &B256) -> String {
    format!("{hash:#x}")
}

impl EthereumAnchor {
    /// A backend that checks anchors (no key: it cannot send).
    pub fn new(config: EthereumConfig) -> Result<Self, AnchorError> {
        if config.endpoints.is_empty() {
            return Err(AnchorError::Refused(
                "no Ethereum endpoint configured".into(),
            ));
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|url| Endpoint::new(url, &config.endpoint_options))
            .collect::<Result<Vec<_>, _>>()?;
        let journal = Journal::open(config.journal.as_deref())?;
        Ok(Self {
            endpoints,
            config,
            sender: None,
            journal: Mutex::new(journal),
        })
    }

    /// The same backend, sending with `signer`; `voucher` states, for a chain id and address,
    /// that this node's roster key anchors from it.
    pub fn with_sender(mut self, signer: PrivateKeySigner, voucher: Voucher) -> Self {
        let recipient = self.config.contract.unwrap_or(signer.address());
        self.sender = Some(Sender {
            signer,
            voucher,
            recipient,
        });
        self
    }

    /// The anchoring account, if this backend sends.
    pub fn address(&self) -> Option<Address> {
        self.sender.as_ref().map(|s| s.signer.address())
    }

    fn primary(&self) -> &Endpoint {
        &self.endpoints[0]
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn chain_id(&self, endpoint: &Endpoint) -> Result<u64, AnchorError> {
        let served = endpoint.chain_id().await?;
        match self.config.expected_chain_id {
            Some(expected) if expected != served => Err(AnchorError::Refused(format!(
                "{} serves Ethereum chain {served}, not chain {expected} (anchor.chain_id)",
                endpoint.url()
            ))),
            _ => Ok(served),
        }
    }

    /// The canonical hash of block `number` on `endpoint`, and its head number.
    async fn canonical(
        &self,
        endpoint: &Endpoint,
        number: u64,
    ) -> Result<(Option<B256>, u64), RpcError> {
        let provider = endpoint.provider();
        let block = provider
            .get_block_by_number(number.into())
            .await
            .map_err(|e| endpoint.error("eth_getBlockByNumber", e))?;
        let head = provider
            .get_block_number()
            .await
            .map_err(|e| endpoint.error("eth_blockNumber", e))?;
        Ok((block.map(|b| b.header.hash), head))
    }

    /// Builds the proof of a mined transaction from its block, or `None` if the block changed
    /// meanwhile (a reorganisation between two calls: asked again later).
    async fn proof_of(
        &self,
        endpoint: &Endpoint,
        chain_id: u64,
        receipt: &TransactionReceipt,
        request: &AnchorRequest,
        account: AnchorAccount,
    ) -> Result<Option<AnchorProof>, AnchorError> {
        let provider = endpoint.provider();
        let (Some(block_hash), Some(index)) = (receipt.block_hash, receipt.transaction_index)
        else {
            return Ok(None);
        };
        let Some(block) = provider
            .get_block_by_hash(block_hash)
            .full()
            .await
            .map_err(|e| endpoint.error("eth_getBlockByHash", e))?
        else {
            return Ok(None);
        };
        let header = alloy::rlp::encode(&block.header.inner);
        let base_fee = block.header.inner.base_fee_per_gas.map_or(0, u128::from);
        let Ok(index) = usize::try_from(index) else {
            return Ok(None);
        };
        // What the transaction can have cost at most, from the header and the transaction
        // themselves (checked with the evidence below), not from the endpoint's receipt.
        let cost_bound = block
            .transactions
            .as_transactions()
            .and_then(|all| all.get(index))
            .map(|tx| {
                let envelope = tx.inner.inner();
                let price = envelope
                    .max_fee_per_gas()
                    .min(base_fee.saturating_add(envelope.max_priority_fee_per_gas().unwrap_or(0)));
                u128::from(envelope.gas_limit()).saturating_mul(price)
            })
            .unwrap_or(u128::MAX);
        let transactions: Vec<Vec<u8>> = block
            .transactions
            .into_transactions()
            .map(|tx| tx.inner.into_inner().encoded_2718())
            .collect();
        let Some(receipts) = provider
            .get_block_receipts(BlockId::hash(block_hash))
            .await
            .map_err(|e| endpoint.error("eth_getBlockReceipts", e))?
        else {
            return Ok(None);
        };
        let receipts: Vec<Vec<u8>> = receipts
            .into_iter()
            .map(|r| r.inner.into_primitives_receipt().encoded_2718())
            .collect();
        let evidence = match build_evidence(&header, &transactions, &receipts, index, account) {
            Ok(evidence) => evidence,
            Err(error) => {
                tracing::debug!(%error, "block changed while its evidence was gathered");
                return Ok(None);
            }
        };
        let proof = AnchorProof {
            chain_id,
            transaction: hex0x(&receipt.transaction_hash),
            block_number: block.header.inner.number,
            block_hash: hex0x(&block_hash),
            timeline: request.timeline.to_hex(),
            timeline_index: request.index,
            timeline_block: request.block.to_hex(),
            cost_wei: u128::from(receipt.gas_used)
                .saturating_mul(receipt.effective_gas_price)
                .min(cost_bound),
            evidence: Some(evidence),
        };
        verify_evidence(&proof).map_err(|e| {
            AnchorError::Refused(format!("the anchor's own evidence does not verify: {e}"))
        })?;
        Ok(Some(proof))
    }

    /// Whether a version of a pending transaction was mined: its proof once its block is
    /// canonical on every endpoint, or that one is in a block not (yet) provable so, or none.
    async fn mined(
        &self,
        endpoint: &Endpoint,
        chain_id: u64,
        pending: &Pending,
        request: &AnchorRequest,
        sender: &Sender,
    ) -> Result<Mined, AnchorError> {
        for (hash, _) in pending.sent.iter().rev() {
            let Ok(hash) = hash.parse::<B256>() else {
                continue;
            };
            let Some(receipt) = endpoint.receipt(hash).await? else {
                continue;
            };
            if !receipt.status() {
                // The nonce is spent; what it cost is not known from verified data, so the
                // worst case stays counted against the daily cap.
                self.journal().abandon(&pending.timeline, pending.index)?;
                return Err(AnchorError::Refused(format!(
                    "anchoring transaction {hash:#x} failed on chain; a new one is sent next time"
                )));
            }
            let account = sender.account(chain_id);
            let Some(proof) = self
                .proof_of(endpoint, chain_id, &receipt, request, account)
                .await?
            else {
                return Ok(Mined::InUnprovenBlock);
            };
            // Believed only once every endpoint agrees its block is canonical: the endpoint
            // that was sent the transaction could wrap it in a block of its own making.
            return match self.verify_proof(&proof, 1).await {
                Ok(_) => Ok(Mined::Proven(Box::new(proof))),
                Err(AnchorError::Refused(reason)) => {
                    tracing::debug!(%reason, "mined anchor not canonical everywhere yet");
                    Ok(Mined::InUnprovenBlock)
                }
                Err(error) => Err(error),
            };
        }
        Ok(Mined::Nowhere)
    }

    /// Records a proven anchor's cost (bounded by its verified fees) and forgets its pending
    /// transaction; a journal that cannot be written does not lose the proof.
    fn settle(&self, proof: &AnchorProof) {
        if let Err(error) = self.journal().settle(
            &proof.timeline,
            proof.timeline_index,
            proof.cost_wei,
            unix_now(),
        ) {
            tracing::warn!(%error, "anchor mined but not journaled");
        }
    }

    /// The nonce and fees of a timeline block's first transaction. An earlier block's
    /// transaction still waiting in the pool (given up on after failed attempts, stuck under a
    /// fee spike, say) is replaced at its nonce, so that at most one anchoring transaction
    /// waits at a time; its timeline's next anchor covers that block. Journal entries whose
    /// nonce is used (mined, or taken) or that are in no pool (dropped, or another key's) are
    /// forgotten; their reservations stay counted.
    async fn fresh_slot(
        &self,
        endpoint: &Endpoint,
        address: Address,
        base_fee: u128,
        first: Fees,
    ) -> Result<FreshSlot, AnchorError> {
        let next = endpoint.pending_nonce(address).await?;
        let fresh = FreshSlot {
            nonce: next,
            fees: first,
            gas_floor: 0,
            replaces: None,
        };
        let earlier = self.journal().pending_by_nonce();
        if earlier.is_empty() {
            return Ok(fresh);
        }
        let mined = endpoint.mined_nonce(address).await?;
        let mut waiting = Vec::new();
        for entry in earlier {
            if (mined..next).contains(&entry.nonce) {
                waiting.push(entry);
            } else {
                self.journal().abandon(&entry.timeline, entry.index)?;
            }
        }
        // Only the lowest can be replaced usefully: every later nonce waits behind it.
        let Some(lowest) = waiting.into_iter().next() else {
            return Ok(fresh);
        };
        let mut ours = false;
        for (hash, _) in lowest.sent.iter().rev() {
            if let Ok(hash) = hash.parse::<B256>()
                && endpoint.in_pool(hash, address).await?
            {
                ours = true;
                break;
            }
        }
        let Some(&(_, offered)) = lowest.sent.last() else {
            return Ok(fresh);
        };
        if !ours {
            // Another transaction holds that nonce in the pool: not ours to replace.
            return Ok(fresh);
        }
        match self.config.fees.replacement(offered, base_fee) {
            Ok(fees) => {
                tracing::info!(
                    nonce = lowest.nonce,
                    replaced_index = lowest.index,
                    "an earlier block's anchoring transaction still waits in the pool; replacing it"
                );
                Ok(FreshSlot {
                    nonce: lowest.nonce,
                    fees,
                    gas_floor: lowest.gas_limit,
                    replaces: Some(lowest),
                })
            }
            Err(refusal) => {
                tracing::warn!(
                    %refusal,
                    nonce = lowest.nonce,
                    "an earlier anchoring transaction waits in the pool and cannot be replaced; this one waits behind it"
                );
                Ok(fresh)
            }
        }
    }

    /// Signs and sends one version of the transaction of `pending` with `fees`, journaled
    /// (with its worst-case cost) before it leaves.
    async fn send_version(
        &self,
        endpoint: &Endpoint,
        chain_id: u64,
        sender: &Sender,
        pending: &mut Pending,
        fees: Fees,
        request: &AnchorRequest,
    ) -> Result<(), AnchorError> {
        let worst_case = fees.worst_case(pending.gas_limit);
        {
            let mut journal = self.journal();
            let now = unix_now();
            let already = journal.reserved(pending.nonce, now);
            let spent = journal.spent_today(now).saturating_sub(already);
            self.config.fees.within_cap(spent, worst_case)?;
        }
        let signed = UnsignedTransaction {
            chain_id,
            nonce: pending.nonce,
            gas_limit: pending.gas_limit,
            fees,
            to: TxKind::Call(sender.recipient),
            value: U256::ZERO,
            input: Bytes::from(anchor_calldata(request)),
        }
        .sign(&sender.signer)
        .map_err(|e| AnchorError::Refused(format!("cannot sign the anchoring transaction: {e}")))?;
        let hash = signed.hash;
        pending.sent.push((hex0x(&hash), fees));
        pending.last_sent_at = unix_now();
        self.journal().record_sent(pending.clone(), worst_case)?;
        if let Err(error) = endpoint.send(&signed.raw).await {
            let known = error.refusal().is_some_and(|message| {
                let message = message.to_ascii_lowercase();
                message.contains("already known")
                    || message.contains("already imported")
                    || message.contains("nonce too low")
            });
            if !known {
                return Err(error.into());
            }
        }
        tracing::info!(
            transaction = %hash,
            nonce = pending.nonce,
            max_fee_gwei = %crate::fees::gwei(fees.max_fee_per_gas),
            version = pending.sent.len(),
            "anchoring transaction sent"
        );
        Ok(())
    }

    async fn anchor_request(&self, request: &AnchorRequest) -> Result<AnchorProof, AnchorError> {
        let sender = self.sender.as_ref().ok_or(AnchorError::NoKey)?;
        let endpoint = self.primary();
        let provider = endpoint.provider();
        let chain_id = self.chain_id(endpoint).await?;
        let address = sender.signer.address();
        let timeline = request.timeline.to_hex();

        let previous = self.journal().pending(&timeline, request.index).cloned();
        let mut pending = match previous {
            Some(previous) => {
                // The count first: a version mined after it is then seen by `mined`, so the
                // nonce is never given up while one of ours may be in a block.
                let used = endpoint.mined_nonce(address).await?;
                match self
                    .mined(endpoint, chain_id, &previous, request, sender)
                    .await?
                {
                    Mined::Proven(proof) => {
                        self.settle(&proof);
                        return Ok(*proof);
                    }
                    Mined::InUnprovenBlock => Some(previous),
                    Mined::Nowhere if used > previous.nonce => {
                        // No version of ours is in a block, yet the nonce is used: another
                        // transaction of this account took it. Start again with a new nonce;
                        // the old reservation stays counted.
                        self.journal().abandon(&timeline, request.index)?;
                        None
                    }
                    Mined::Nowhere => Some(previous),
                }
            }
            None => None,
        };
        if pending.is_none() {
            let base_fee = endpoint.base_fee().await?;
            let first = self.config.fees.first(base_fee)?;
            let slot = self.fresh_slot(endpoint, address, base_fee, first).await?;
            let estimate = provider
                .estimate_gas(TransactionRequest {
                    from: Some(address),
                    to: Some(TxKind::Call(sender.recipient)),
                    input: TransactionInput::new(Bytes::from(anchor_calldata(request))),
                    ..TransactionRequest::default()
                })
                .await
                .map_err(|e| endpoint.error("eth_estimateGas", e))?;
            if !(21_000..=MAX_ANCHOR_GAS).contains(&estimate) {
                return Err(AnchorError::Refused(format!(
                    "the endpoint estimates {estimate} gas for an anchor, which takes about 25,000; refusing to send"
                )));
            }
            let mut fresh = Pending {
                timeline: timeline.clone(),
                index: request.index,
                nonce: slot.nonce,
                // Never below the replaced transaction's: it may still be the one mined, and
                // the nonce's reservation must cover it.
                gas_limit: estimate.saturating_add(estimate / 10).max(slot.gas_floor),
                sent: Vec::new(),
                last_sent_at: 0,
            };
            self.send_version(endpoint, chain_id, sender, &mut fresh, slot.fees, request)
                .await?;
            if let Some(replaced) = slot.replaces {
                self.journal().abandon(&replaced.timeline, replaced.index)?;
            }
            pending = Some(fresh);
        }
        let Some(mut pending) = pending else {
            return Err(AnchorError::Refused("no transaction to wait for".into()));
        };

        let start = Instant::now();
        let mut last_try = Instant::now();
        let mut warned_ceiling = false;
        loop {
            let in_block = match self
                .mined(endpoint, chain_id, &pending, request, sender)
                .await?
            {
                Mined::Proven(proof) => {
                    self.settle(&proof);
                    return Ok(*proof);
                }
                Mined::InUnprovenBlock => true,
                Mined::Nowhere => false,
            };
            if start.elapsed() >= self.config.mined_timeout {
                return Err(AnchorError::Refused(format!(
                    "anchoring transaction (nonce {}) not mined within {} s; the next attempt waits for it or replaces it",
                    pending.nonce,
                    self.config.mined_timeout.as_secs()
                )));
            }
            let stuck_for = unix_now().saturating_sub(pending.last_sent_at);
            if !in_block
                && stuck_for >= self.config.replace_after.as_secs()
                && last_try.elapsed() >= self.config.replace_after
            {
                last_try = Instant::now();
                let Some(&(_, stuck)) = pending.sent.last() else {
                    return Err(AnchorError::Refused("no transaction to replace".into()));
                };
                let base_fee = endpoint.base_fee().await?;
                match self.config.fees.replacement(stuck, base_fee) {
                    Ok(fees) => {
                        tracing::warn!(
                            nonce = pending.nonce,
                            stuck_for_s = stuck_for,
                            "anchoring transaction not mined; replacing it with higher fees (same nonce)"
                        );
                        self.send_version(endpoint, chain_id, sender, &mut pending, fees, request)
                            .await?;
                    }
                    Err(refusal) => {
                        if !warned_ceiling {
                            tracing::warn!(%refusal, "stuck anchoring transaction cannot be replaced");
                            warned_ceiling = true;
                        }
                    }
                }
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn verify_proof(
        &self,
        proof: &AnchorProof,
        min_confirmations: u64,
    ) -> Result<Confirmation, AnchorError> {
        let verified = verify_evidence(proof).map_err(|e| AnchorError::Refused(e.0))?;
        let mut confirmations = u64::MAX;
        for endpoint in &self.endpoints {
            let chain_id = self.chain_id(endpoint).await?;
            if chain_id != proof.chain_id {
                return Err(AnchorError::Refused(format!(
                    "the proof is for Ethereum chain {}, {} serves chain {chain_id}",
                    proof.chain_id,
                    endpoint.url()
                )));
            }
            let (canonical, head) = self.canonical(endpoint, verified.block_number).await?;
            if canonical != Some(verified.block_hash) {
                return Err(AnchorError::Refused(format!(
                    "block {} is {} on {}, not the anchored {}: reorganised away or a forged proof",
                    verified.block_number,
                    canonical.map_or("missing".into(), |h| hex0x(&h)),
                    endpoint.url(),
                    hex0x(&verified.block_hash)
                )));
            }
            confirmations =
                confirmations.min(head.saturating_sub(verified.block_number).saturating_add(1));
        }
        if confirmations < min_confirmations {
            return Err(AnchorError::NotConfirmed {
                confirmations,
                required: min_confirmations,
            });
        }
        Ok(Confirmation {
            confirmations,
            verified,
        })
    }

    async fn refresh_proof(&self, proof: &AnchorProof) -> Result<Option<AnchorProof>, AnchorError> {
        let request = proof.request().map_err(AnchorError::Refused)?;
        let endpoint = self.primary();
        let Ok(hash) = proof.transaction.parse::<B256>() else {
            return Err(AnchorError::Refused(format!(
                "transaction hash {:?} is not 32 hex bytes",
                proof.transaction
            )));
        };
        let Some(receipt) = endpoint.receipt(hash).await? else {
            return Ok(None);
        };
        if !receipt.status() {
            return Ok(None);
        }
        let chain_id = self.chain_id(endpoint).await?;
        let account = match (&proof.evidence, &self.sender) {
            (_, Some(sender)) => sender.account(chain_id),
            (Some(evidence), None) => evidence.account.clone(),
            (None, None) => {
                return Err(AnchorError::Refused(
                    "an old proof without evidence can only be renewed by the node that sent it"
                        .into(),
                ));
            }
        };
        let Some(current) = self
            .proof_of(endpoint, chain_id, &receipt, &request, account)
            .await?
        else {
            return Ok(None);
        };
        match self.verify_proof(&current, 1).await {
            Ok(_) => Ok(Some(current)),
            Err(AnchorError::Refused(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Anchors a proof's block again after its transaction left the chain: the original
    /// signed transaction (in the evidence) is sent again and waited for with its own nonce,
    /// so it cannot be mined twice; only if that nonce went elsewhere is a new one used.
    async fn reanchor_proof(&self, proof: &AnchorProof) -> Result<AnchorProof, AnchorError> {
        use alloy::eips::eip2718::Decodable2718;
        let sender = self.sender.as_ref().ok_or(AnchorError::NoKey)?;
        let request = proof.request().map_err(AnchorError::Refused)?;
        let known = self
            .journal()
            .pending(&proof.timeline, proof.timeline_index)
            .is_some();
        if let (false, Some(evidence)) = (known, &proof.evidence)
            && let Ok(original) = TxEnvelope::decode_2718(&mut evidence.transaction.as_slice())
            && alloy::consensus::transaction::SignerRecoverable::recover_signer(&original)
                .is_ok_and(|signer| signer == sender.signer.address())
            // A later block's transaction took that nonce over (ours, pending): sending the
            // original again would only compete with it.
            && !self.journal().holds_nonce(original.nonce())
        {
            let fees = Fees {
                max_fee_per_gas: original.max_fee_per_gas(),
                priority_fee_per_gas: original.max_priority_fee_per_gas().unwrap_or(0),
            };
            let pending = Pending {
                timeline: proof.timeline.clone(),
                index: proof.timeline_index,
                nonce: original.nonce(),
                gas_limit: original.gas_limit(),
                sent: vec![(hex0x(original.tx_hash()), fees)],
                last_sent_at: unix_now(),
            };
            let worst_case = fees.worst_case(pending.gas_limit);
            self.journal().record_sent(pending, worst_case)?;
            let endpoint = self.primary();
            if let Err(error) = endpoint.send(&evidence.transaction).await {
                tracing::debug!(%error, "original anchoring transaction not taken again");
            }
        }
        self.anchor_request(&request).await
    }

    async fn account_status(&self) -> Result<Option<AccountStatus>, AnchorError> {
        let Some(sender) = &self.sender else {
            return Ok(None);
        };
        let endpoint = self.primary();
        let address = sender.signer.address();
        let balance = endpoint
            .provider()
            .get_balance(address)
            .await
            .map_err(|e| endpoint.error("eth_getBalance", e))?;
        let spent_today_wei = self.journal().spent_today(unix_now());
        Ok(Some(AccountStatus {
            address: format!("{address:#x}"),
            balance_wei: u128::try_from(balance).unwrap_or(u128::MAX),
            spent_today_wei,
            daily_cap_wei: self.config.fees.daily_cap_wei,
            max_fee_per_gas: self.config.fees.max_fee_per_gas,
        }))
    }
}

impl Anchor for EthereumAnchor {
    fn anchor<'a>(
        &'a self,
        request: &'a AnchorRequest,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>> {
        Box::pin(self.anchor_request(request))
    }

    fn verify<'a>(
        &'a self,
        proof: &'a AnchorProof,
        min_confirmations: u64,
    ) -> BoxFuture<'a, Result<Confirmation, AnchorError>> {
        Box::pin(self.verify_proof(proof, min_confirmations))
    }

    fn refresh<'a>(
        &'a self,
        proof: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<Option<AnchorProof>, AnchorError>> {
        Box::pin(self.refresh_proof(proof))
    }

    fn reanchor<'a>(
        &'a self,
        proof: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>> {
        Box::pin(self.reanchor_proof(proof))
    }

    fn status(&self) -> BoxFuture<'_, Result<Option<AccountStatus>, AnchorError>> {
        Box::pin(self.account_status())
    }
}

impl From<FeeRefusal> for AnchorError {
    fn from(refusal: FeeRefusal) -> Self {
        Self::Fees(refusal)
    }
}
