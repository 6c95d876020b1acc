//! What the command-line tests share: the test kit's HTTP client and waiting, under the names
//! these tests use.

#![allow(dead_code, unused_imports)] // each test file uses its own subset

pub(crate) use chainiac_tests::{PATIENCE, TestResult, http, wait_for_blocking as wait_for};
