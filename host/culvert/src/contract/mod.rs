//! The contract: the host side of the WIT world and its version rules.
//!
//! - The one `bindgen!` of the crate. It points at the repository's root
//!   `wit/` folder, the same files the SDK's `wit_bindgen::generate!` reads,
//!   so host and guests cannot drift apart. The rest of the crate converts
//!   the generated types into plain, serializable Rust in the `package`
//!   stage.
//! - A second `bindgen!` over the frozen 0.1 text (`wit/0.1/`, in `v01.rs`)
//!   and the conversion of its types into the current ones, so that every
//!   0.1 package loads and runs unchanged; [`ContractPre`] is a component
//!   linked as the version it was built against.
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

mod v01;

pub(crate) use generated::*;
pub(crate) use v01::{frozen as v0_1, log_level as v0_1_log_level};

/// The contract version this host speaks: the version of the WIT package
/// new packages are built against.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Every `major.minor` this host runs. Each older one has a frozen copy of
/// its WIT (`wit/0.1/`) and its own bindings, converted into the current
/// types (see `v01.rs`).
pub const ACCEPTED_CONTRACTS: &[&str] = &["0.1", "0.2"];

/// A component linked against the contract version it was built for.
pub(crate) enum ContractPre<T: 'static> {
    /// Built against `culvert:plugin@0.1.x`.
    V01(v01::frozen::PluginPre<T>),
    /// Built against the current contract.
    Current(PluginPre<T>),
}

impl<T: 'static> Clone for ContractPre<T> {
    fn clone(&self) -> Self {
        match self {
            ContractPre::V01(p) => ContractPre::V01(p.clone()),
            ContractPre::Current(p) => ContractPre::Current(p.clone()),
        }
    }
}

impl<T: Send + 'static> ContractPre<T> {
    /// Link `instance` as the contract `version` (`0.1.x` or the current
    /// one) says.
    ///
    /// # Errors
    /// When the component's exports do not match that version's world.
    pub(crate) fn new(
        version: &str,
        instance: wasmtime::component::InstancePre<T>,
    ) -> wasmtime::Result<Self> {
        if version.starts_with("0.1") {
            Ok(ContractPre::V01(v01::frozen::PluginPre::new(instance)?))
        } else {
            Ok(ContractPre::Current(PluginPre::new(instance)?))
        }
    }

    /// Instantiate in `store` and call `describe`, as the current types.
    pub(crate) async fn describe(
        &self,
        store: &mut wasmtime::Store<T>,
    ) -> wasmtime::Result<types::PackageInfo> {
        match self {
            ContractPre::V01(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let info = instance
                    .culvert_plugin_metadata()
                    .call_describe(&mut *store)
                    .await?;
                Ok(v01::package_info(info))
            }
            ContractPre::Current(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .culvert_plugin_metadata()
                    .call_describe(&mut *store)
                    .await
            }
        }
    }

    /// Instantiate in `store` and call `run`, as the current types.
    pub(crate) async fn run(
        &self,
        store: &mut wasmtime::Store<T>,
        workflow: &str,
        task: &str,
        context_json: &str,
        attempt: &types::AttemptInfo,
    ) -> wasmtime::Result<Result<String, types::TaskError>> {
        match self {
            ContractPre::V01(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let returned = instance
                    .culvert_plugin_task()
                    .call_run(
                        &mut *store,
                        workflow,
                        task,
                        context_json,
                        &v01::attempt_info(attempt),
                    )
                    .await?;
                Ok(returned.map_err(v01::task_error))
            }
            ContractPre::Current(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .culvert_plugin_task()
                    .call_run(&mut *store, workflow, task, context_json, attempt)
                    .await
            }
        }
    }
}

/// Add every accepted version's `host` imports to `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub(crate) fn add_to_linker<T, D>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> D::Data<'_>,
) -> wasmtime::Result<()>
where
    T: Send + 'static,
    D: wasmtime::component::HasData,
    for<'a> D::Data<'a>: culvert::plugin::host::Host
        + types::Host
        + v01::frozen::culvert::plugin::host::Host
        + v01::frozen::culvert::plugin::types::Host,
{
    Plugin::add_to_linker::<T, D>(linker, get)?;
    v01::frozen::Plugin::add_to_linker::<T, D>(linker, get)?;
    Ok(())
}

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

/// Check a contract version string against [`ACCEPTED_CONTRACTS`]:
/// compatible when the semver caret rule allows it against one of them
/// (same major; for `0.x`, same minor).
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
    let Some((fmaj, fmin)) = parse(found) else {
        return false;
    };
    ACCEPTED_CONTRACTS
        .iter()
        .any(|accepted| match parse(accepted) {
            Some((emaj, emin)) => fmaj == emaj && (emaj != 0 || fmin == emin),
            None => false,
        })
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
        assert!(super::is_compatible("0.2.0"));
        assert!(super::is_compatible("0.2.3"));
        assert!(!super::is_compatible("0.3.0"));
        assert!(!super::is_compatible("0.0.9"));
        assert!(!super::is_compatible("1.1.0"));
        assert!(!super::is_compatible("garbage"));
        let err = super::check_contract_version("0.3.0").unwrap_err();
        assert_eq!(err.found, "0.3.0");
        assert_eq!(err.expected, super::CONTRACT_VERSION);
        let text = err.to_string();
        assert!(text.contains("0.3.0") && text.contains("0.2.0"), "{text}");
    }

    /// The frozen 0.1 text is the one 0.1 packages were built against.
    #[test]
    fn the_frozen_wit_is_version_0_1() {
        let wit = include_str!("../../../../wit/0.1/culvert.wit");
        assert!(wit.contains("package culvert:plugin@0.1.0;"));
        assert!(!wit.contains("schedule"), "0.1 has no schedules");
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
