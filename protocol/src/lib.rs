#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod agreement;
pub mod anchor;
pub mod cosi;
pub mod data_chain;
pub mod encoding;
mod error;
pub mod hash;
pub mod keys;
pub mod light_client;
pub mod policy;
pub mod project;
pub mod release;
pub mod skipchain;
pub mod timeline;

pub use error::Error;
pub use hash::Hash;

/// Result type of every fallible operation of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
