//! Fuzzing the files people and programs hand to chainiac: the node's configuration (TOML),
//! release bundles and project files (JSON). The engine is `fuzz/engine.rs` (see fuzz/README.md);
//! the properties checked on every mutated input:
//! * nothing panics, whatever the bytes;
//! * a configuration that loads is written back (`node init` writes this form) as a file that
//!   loads to the same configuration, so no value changes meaning on the way;
//! * a bundle or project file that loads yields its fields or an error, and is saved as a
//!   file that loads to the same content.

#![cfg(feature = "command")]

use chainiac_cli::publisher::{Bundle, ProjectFile};
use chainiac_node::config::NodeConfig;

#[path = "../../fuzz/engine.rs"]
mod engine;

use engine::fuzz;

fn node_config(bytes: &[u8]) -> Result<bool, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(false);
    };
    let Ok(config) = NodeConfig::parse(text) else {
        return Ok(false);
    };
    let written = config.to_commented_toml();
    match NodeConfig::parse(&written) {
        Ok(again) if again == config => Ok(true),
        Ok(again) => Err(format!(
            "the written configuration loads differently: {config:?} became {again:?}"
        )),
        Err(error) => Err(format!(
            "the written configuration does not load: {error}\n{written}"
        )),
    }
}

fn release_bundle(bytes: &[u8]) -> Result<bool, String> {
    let Ok(bundle) = serde_json::from_slice::<Bundle>(bytes) else {
        return Ok(false);
    };
    // Every field decodes or is an error; none panics.
    let _ = bundle.manifest();
    let _ = bundle.signatures();
    let _ = bundle.attestations();
    let saved = serde_json::to_string_pretty(&bundle).map_err(|e| e.to_string())?;
    let again: Bundle = serde_json::from_str(&saved).map_err(|e| format!("saved bundle: {e}"))?;
    if serde_json::to_string_pretty(&again).map_err(|e| e.to_string())? != saved {
        return Err("a saved bundle loads to another bundle".into());
    }
    Ok(true)
}

fn project_file(bytes: &[u8]) -> Result<bool, String> {
    let Ok(project) = serde_json::from_slice::<ProjectFile>(bytes) else {
        return Ok(false);
    };
    let _ = project.policy_chain();
    let _ = project.release_chain();
    let saved = serde_json::to_string_pretty(&project).map_err(|e| e.to_string())?;
    let again: ProjectFile =
        serde_json::from_str(&saved).map_err(|e| format!("saved project file: {e}"))?;
    if serde_json::to_string_pretty(&again).map_err(|e| e.to_string())? != saved {
        return Err("a saved project file loads to another one".into());
    }
    Ok(true)
}

#[test]
fn fuzz_node_config() {
    fuzz("node_config", &["node_config"], node_config);
}

#[test]
fn fuzz_release_bundle() {
    fuzz("release_bundle", &["release_bundle"], release_bundle);
}

#[test]
fn fuzz_project_file() {
    fuzz("project_file", &["project_file"], project_file);
}
