//! Admission: the operator's policy on who may create chains this node witnesses. A witness
//! cosigns a genesis (its certificate) only if the chain's creator key is admitted: listed in
//! the configuration, or, in open mode, below its quota of chains on this node.

use chainiac_protocol::keys::PublicKey;

use crate::config::{AdmissionConfig, AdmissionMode};

/// The admission policy in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    mode: AdmissionMode,
    quota: u64,
    creators: Vec<PublicKey>,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            mode: AdmissionMode::Open,
            quota: AdmissionConfig::default().quota,
            creators: Vec::new(),
        }
    }
}

impl Admission {
    /// The policy a configuration describes; an invalid creator key is an error naming it.
    pub fn from_config(config: &AdmissionConfig) -> Result<Self, String> {
        let creators = config
            .creators
            .iter()
            .map(|hex| {
                PublicKey::from_hex(hex.trim()).map_err(|error| {
                    format!("admission.creators: {hex:?} is not a public key ({error})")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode: config.mode,
            quota: config.quota,
            creators,
        })
    }

    /// Whether `creator`, who already created `created` chains on this node, may create
    /// another; the error says why not and what the operator can do.
    pub fn admit(&self, creator: &PublicKey, created: u64) -> Result<(), String> {
        if self.creators.contains(creator) {
            return Ok(());
        }
        match self.mode {
            AdmissionMode::AllowList => Err(format!(
                "this node admits new chains only from the creators its operator listed, and {creator} is not one (admission.creators in its config.toml)"
            )),
            AdmissionMode::Open if created >= self.quota => Err(format!(
                "creator {creator} already created {created} chains on this node, its quota (admission.quota); its operator can list the key in admission.creators"
            )),
            AdmissionMode::Open => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_protocol::keys::SecretKey;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed(&[seed; 32]).public_key()
    }

    #[test]
    fn open_admission_applies_the_quota_except_to_listed_creators() {
        let admission = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::Open,
            quota: 2,
            creators: vec![key(1).to_hex()],
        })
        .expect("valid");
        assert!(admission.admit(&key(2), 0).is_ok());
        assert!(admission.admit(&key(2), 1).is_ok());
        let refused = admission.admit(&key(2), 2).unwrap_err();
        assert!(refused.contains("quota"), "{refused}");
        assert!(admission.admit(&key(1), 1000).is_ok());
    }

    #[test]
    fn an_allow_list_admits_only_its_creators() {
        let admission = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::AllowList,
            quota: 16,
            creators: vec![key(1).to_hex()],
        })
        .expect("valid");
        assert!(admission.admit(&key(1), 0).is_ok());
        let refused = admission.admit(&key(2), 0).unwrap_err();
        assert!(refused.contains("admission.creators"), "{refused}");
    }

    #[test]
    fn a_bad_creator_key_is_named() {
        let error = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::AllowList,
            quota: 16,
            creators: vec!["zz".into()],
        })
        .unwrap_err();
        assert!(error.contains("\"zz\""), "{error}");
    }
}
