//! External-chain anchoring of the chainiac timeline: the `Anchor` trait and its backends are
//! the subject of the anchoring issue. The crate exists so that the workspace has its final
//! shape and dependency direction (`node -> anchor -> protocol`).
