//! A locally signed EIP-1559 transaction. Every transaction this crate sends or makes up (an
//! anchor, the contract's deployment, a testnet's funding, a synthetic block's) is built,
//! signed and encoded here, so there is one place where its fields are put together.

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{B256, Bytes, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;

use crate::fees::Fees;

/// An EIP-1559 transaction before signing (no access list: nothing here needs one).
#[derive(Clone, Debug)]
pub(crate) struct UnsignedTransaction {
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_limit: u64,
    pub fees: Fees,
    /// A call to an address, or a contract creation.
    pub to: TxKind,
    pub value: U256,
    pub input: Bytes,
}

/// A signed transaction as it is sent: its hash and its EIP-2718 encoding.
#[derive(Clone, Debug)]
pub(crate) struct SignedTransaction {
    pub hash: B256,
    pub raw: Vec<u8>,
}

impl UnsignedTransaction {
    /// Signs with `signer` (RFC 6979: the same inputs give the same bytes).
    pub(crate) fn sign(
        self,
        signer: &PrivateKeySigner,
    ) -> Result<SignedTransaction, alloy::signers::Error> {
        let mut transaction = TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas_limit,
            max_fee_per_gas: self.fees.max_fee_per_gas,
            max_priority_fee_per_gas: self.fees.priority_fee_per_gas,
            to: self.to,
            value: self.value,
            access_list: Default::default(),
            input: self.input,
        };
        let signature = signer.sign_transaction_sync(&mut transaction)?;
        let envelope = TxEnvelope::Eip1559(transaction.into_signed(signature));
        Ok(SignedTransaction {
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::consensus::Transaction as _;
    use alloy::consensus::transaction::SignerRecoverable;
    use alloy::eips::eip2718::Decodable2718;

    #[test]
    fn signed_bytes_decode_to_the_fields_and_recover_the_signer()
    -> Result<(), Box<dyn std::error::Error>> {
        let signer: PrivateKeySigner = crate::ANVIL_DEV_KEY.parse()?;
        let to = alloy::primitives::Address::repeat_byte(0x42);
        let unsigned = UnsignedTransaction {
            chain_id: 31337,
            nonce: 7,
            gas_limit: 30_000,
            fees: Fees {
                max_fee_per_gas: 3_000_000_000,
                priority_fee_per_gas: 1_000_000_000,
            },
            to: TxKind::Call(to),
            value: U256::from(5u8),
            input: Bytes::from_static(b"anchor"),
        };
        let signed = unsigned.clone().sign(&signer)?;
        assert_eq!(signed.raw, unsigned.sign(&signer)?.raw, "deterministic");
        assert_eq!(signed.raw[0], 0x02, "EIP-2718 type 2");
        let decoded = TxEnvelope::decode_2718(&mut signed.raw.as_slice())?;
        assert_eq!(*decoded.tx_hash(), signed.hash);
        assert_eq!(decoded.chain_id(), Some(31337));
        assert_eq!(decoded.nonce(), 7);
        assert_eq!(decoded.gas_limit(), 30_000);
        assert_eq!(decoded.max_fee_per_gas(), 3_000_000_000);
        assert_eq!(decoded.max_priority_fee_per_gas(), Some(1_000_000_000));
        assert_eq!(decoded.to(), Some(to));
        assert_eq!(decoded.value(), U256::from(5u8));
        assert_eq!(decoded.input().as_ref(), b"anchor");
        assert_eq!(decoded.recover_signer()?, signer.address());
        Ok(())
    }
}
