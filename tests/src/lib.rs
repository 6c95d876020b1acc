//! Cross-crate integration tests of chainiac live in `tests/`; this crate has no library code.
