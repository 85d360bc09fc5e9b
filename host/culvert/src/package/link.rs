//! Linking and import checks: a compiled component is checked against the
//! contract (its version, its world, what it imports) and linked into a
//! [`ContractPre`] ready to instantiate, as the contract version it was
//! built against.

use crate::contract::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, ContractPre, ContractVersionError, interface_version,
    is_compatible,
};
use crate::sandbox::{HostState, SandboxEngine};
use wasmtime::component::Component;

/// A valid component that does not fit this host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IncompatibleComponent {
    /// Built against another, incompatible contract version.
    #[error(
        "built against contract {CONTRACT_PACKAGE}@{found}, but this host speaks {CONTRACT_PACKAGE}@{expected}"
    )]
    ContractMismatch {
        /// The version the component uses.
        found: String,
        /// The version this host speaks.
        expected: String,
    },
    /// Does not target the `culvert:plugin/plugin` world.
    #[error("not a Culvert package: {0}")]
    WrongWorld(String),
    /// Imports something the host does not provide.
    #[error("imports '{0}', which this host does not provide")]
    UnsupportedImport(String),
}

impl From<ContractVersionError> for IncompatibleComponent {
    fn from(e: ContractVersionError) -> Self {
        IncompatibleComponent::ContractMismatch {
            found: e.found,
            expected: e.expected,
        }
    }
}

/// Check a compiled component against the contract and link it: the
/// contract version first (so a mismatch is named as such), then the
/// imports, then the exports.
///
/// # Errors
/// [`IncompatibleComponent`] naming the offending version or import.
pub(crate) fn prepare(
    engine: &SandboxEngine,
    component: &Component,
) -> Result<ContractPre<HostState>, IncompatibleComponent> {
    let ty = component.component_type();
    let wasmtime_engine = engine.engine();
    let mut exports_contract = false;
    let mut built_for = String::new();
    for (name, _) in ty.exports(wasmtime_engine) {
        if let Some(version) = interface_version(name) {
            exports_contract = true;
            built_for = version.to_string();
            if !is_compatible(version) {
                return Err(IncompatibleComponent::ContractMismatch {
                    found: version.to_string(),
                    expected: CONTRACT_VERSION.to_string(),
                });
            }
        }
    }
    for (name, _) in ty.imports(wasmtime_engine) {
        if let Some(version) = interface_version(name)
            && !is_compatible(version)
        {
            return Err(IncompatibleComponent::ContractMismatch {
                found: version.to_string(),
                expected: CONTRACT_VERSION.to_string(),
            });
        }
    }
    if !exports_contract {
        let exports: Vec<String> = ty
            .exports(wasmtime_engine)
            .map(|(n, _)| n.to_string())
            .take(8)
            .collect();
        return Err(IncompatibleComponent::WrongWorld(format!(
            "it exports no {CONTRACT_PACKAGE} interface (its exports: {})",
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    // Only WASI and the contract's own interfaces may be imported; anything
    // else is refused by name, before linking.
    if let Some(import) = unsupported_import(component, engine) {
        return Err(IncompatibleComponent::UnsupportedImport(import));
    }
    let instance_pre = engine
        .linker()
        .instantiate_pre(component)
        .map_err(|e| IncompatibleComponent::UnsupportedImport(format!("{e:#}")))?;
    ContractPre::new(&built_for, instance_pre)
        .map_err(|e| IncompatibleComponent::WrongWorld(format!("{e:#}")))
}

/// The first import the linker cannot satisfy, by name.
fn unsupported_import(component: &Component, engine: &SandboxEngine) -> Option<String> {
    let ty = component.component_type();
    ty.imports(engine.engine())
        .map(|(name, _)| name)
        .find(|name| !name.starts_with("wasi:") && interface_version(name).is_none())
        .map(str::to_string)
}

/// The names of everything a component imports (WASI interfaces and the
/// contract's `host`), for `package inspect`.
pub fn imports_of(engine: &SandboxEngine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine.engine())
        .map(|(name, _)| name.to_string())
        .collect()
}
