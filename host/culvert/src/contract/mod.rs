//! The contract: the host side of the WIT world and its version rules.
//!
//! - The one `bindgen!` of the crate. It points at the repository's root
//!   `wit/` folder, the same files the SDK's `wit_bindgen::generate!` reads,
//!   so host and guests cannot drift apart. The rest of the crate converts
//!   the generated types into plain, serializable Rust in the `package`
//!   stage.
//! - The version rules: which contract versions this host accepts
//!   ([`check_contract_version`]) and how a versioned interface name is read.
//!
//! This module is the bottom of the pipeline: it imports nothing of the
//! crate except the text helpers.

use crate::guest_text::printable;

mod generated {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
    world: "culvert:plugin/plugin",
    path: "../../wit",
    imports: { default: trappable },
        exports: { default: async },
    });
}

pub(crate) use generated::*;

/// The contract version this host speaks: the version of the WIT package.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The WIT package name, without version.
pub const CONTRACT_PACKAGE: &str = "culvert:plugin";

pub(crate) use generated::culvert::plugin::types;

/// A contract version this host does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "built against contract {CONTRACT_PACKAGE}@{found}, but this host speaks {CONTRACT_PACKAGE}@{expected}"
)]
pub struct ContractVersionError {
    /// The version the package uses (made printable, at most 64
    /// characters).
    pub found: String,
    /// The version this host speaks.
    pub expected: String,
}

/// Check a contract version string against [`CONTRACT_VERSION`]: compatible
/// when the semver caret rule allows it (same major; for `0.x`, same minor).
///
/// # Errors
/// [`ContractVersionError`] naming both versions.
pub fn check_contract_version(found: &str) -> Result<(), ContractVersionError> {
    if is_compatible(found) {
        Ok(())
    } else {
        Err(ContractVersionError {
            found: printable(found),
            expected: CONTRACT_VERSION.to_string(),
        })
    }
}

/// Whether a package built against contract `found` may run on this host.
pub(crate) fn is_compatible(found: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(found), parse(CONTRACT_VERSION)) {
        (Some((fmaj, fmin)), Some((emaj, emin))) => fmaj == emaj && (emaj != 0 || fmin == emin),
        _ => false,
    }
}

/// The contract version in an interface name like
/// `culvert:plugin/task@0.1.0` (empty when unversioned); `None` for an
/// interface of another package.
pub(crate) fn interface_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').map(|(_, v)| v).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    /// The version in `wit/culvert.wit` is the one the host checks against.
    #[test]
    fn the_wit_package_version_is_the_contract_version() {
        let wit = include_str!("../../../../wit/culvert.wit");
        let line = format!(
            "package {}@{};",
            super::CONTRACT_PACKAGE,
            super::CONTRACT_VERSION
        );
        assert!(
            wit.contains(&line),
            "wit/culvert.wit does not declare {line}"
        );
    }

    #[test]
    fn contract_versions_follow_the_caret_rule() {
        assert!(super::is_compatible("0.1.0"));
        assert!(super::is_compatible("0.1.7"));
        assert!(!super::is_compatible("0.2.0"));
        assert!(!super::is_compatible("1.1.0"));
        assert!(!super::is_compatible("garbage"));
        let err = super::check_contract_version("0.2.0").unwrap_err();
        assert_eq!(err.found, "0.2.0");
        assert_eq!(err.expected, super::CONTRACT_VERSION);
        let text = err.to_string();
        assert!(text.contains("0.2.0") && text.contains("0.1.0"), "{text}");
    }

    #[test]
    fn interface_versions_are_read_from_contract_names_only() {
        assert_eq!(
            super::interface_version("culvert:plugin/task@0.1.0"),
            Some("0.1.0")
        );
        assert_eq!(super::interface_version("culvert:plugin/host"), Some(""));
        assert_eq!(super::interface_version("wasi:io/streams@0.2.0"), None);
    }
}
