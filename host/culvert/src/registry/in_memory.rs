//! The in-memory registries of loaded packages: the task registry, keyed by
//! the namespace `tenant::package::workflow::task`, and the workflow
//! registry, per tenant.
//!
//! The reconciler (the next module of this stage) keeps them equal to the
//! database.
//! Every lookup takes a tenant, and no lookup ever returns another
//! tenant's entry.
//!
//! When a tenant has several versions of a package, the newest registered
//! one is *active*: it is what a lookup without a version finds. Older
//! versions stay addressable by explicit version.

use crate::package::{
    CacheSource, ContentHash, LoadedPackage, PackageMetadata, TaskMeta, WorkflowMeta,
};
use crate::store::PackageRow;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// A package loaded into the registries.
#[derive(Debug)]
pub struct RegisteredPackage {
    /// The database id.
    pub id: Uuid,
    /// The owning tenant.
    pub tenant: String,
    /// When it was registered (ms): orders versions.
    pub registered_at: i64,
    /// When this host loaded it (ms).
    pub loaded_at: i64,
    /// The compiled, validated package.
    pub package: LoadedPackage,
}

impl RegisteredPackage {
    /// The metadata.
    pub fn metadata(&self) -> &PackageMetadata {
        &self.package.metadata
    }
    /// The package name.
    pub fn name(&self) -> &str {
        &self.package.metadata.name
    }
    /// The package version.
    pub fn version(&self) -> &str {
        &self.package.metadata.version
    }
    /// The content hash.
    pub fn content_hash(&self) -> ContentHash {
        self.package.content_hash
    }
    /// Where its compiled code came from when it was loaded.
    pub fn cache_source(&self) -> CacheSource {
        self.package.source
    }
}

/// A task's full name: `tenant::package::workflow::task`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TaskNamespace {
    /// The tenant.
    pub tenant: String,
    /// The package name.
    pub package: String,
    /// The workflow name.
    pub workflow: String,
    /// The task id.
    pub task: String,
}

impl TaskNamespace {
    /// Build a namespace.
    pub fn new(tenant: &str, package: &str, workflow: &str, task: &str) -> Self {
        Self {
            tenant: tenant.into(),
            package: package.into(),
            workflow: workflow.into(),
            task: task.into(),
        }
    }

    /// Parse `tenant::package::workflow::task`.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split("::").collect();
        match parts.as_slice() {
            [t, p, w, k] if parts.iter().all(|x| !x.is_empty()) => Some(Self::new(t, p, w, k)),
            _ => None,
        }
    }
}

impl fmt::Display for TaskNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}::{}::{}::{}",
            self.tenant, self.package, self.workflow, self.task
        )
    }
}

/// A workflow of a loaded package.
#[derive(Debug, Clone)]
pub struct WorkflowRef {
    /// The package that defines it.
    pub package: Arc<RegisteredPackage>,
    index: usize,
}

impl WorkflowRef {
    /// The workflow's metadata.
    pub fn workflow(&self) -> &WorkflowMeta {
        &self.package.metadata().workflows[self.index]
    }
    /// `package::workflow`.
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.package.name(), self.workflow().name)
    }
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing by that name in the tenant (or it belongs to another).
    #[error("{0}")]
    NotFound(String),
    /// Several packages define a workflow of that name.
    #[error("{0}")]
    Ambiguous(String),
}

/// [`find_workflow`] for a start (by hand, by a schedule): a package whose
/// signing key its tenant untrusted, under `on_untrust = disable`, starts
/// nothing, and "not found" says why (an older version is not run in its
/// place).
pub(crate) fn find_runnable_workflow<'a>(
    packages: &'a [PackageRow],
    tenant: &str,
    workflow: &str,
    version: Option<&str>,
) -> Result<(&'a PackageRow, usize), LookupError> {
    let (p, index) = find_workflow(packages, tenant, workflow, version)?;
    match p.signature.as_ref().filter(|s| s.disabled) {
        None => Ok((p, index)),
        Some(s) => Err(LookupError::NotFound(format!(
            "workflow '{}' of tenant '{tenant}' is in {}@{}, which is disabled: tenant '{tenant}' untrusted its signing key {} (on_untrust = disable); trust the key again, or add a version signed by a trusted key",
            crate::guest_text::printable(workflow),
            p.name,
            p.version,
            s.key_id
        ))),
    }
}

/// Find `workflow` among `tenant`'s package rows: the newest registered
/// version of each package (or `version`), by `name` or `package::name`.
pub(crate) fn find_workflow<'a>(
    packages: &'a [PackageRow],
    tenant: &str,
    workflow: &str,
    version: Option<&str>,
) -> Result<(&'a PackageRow, usize), LookupError> {
    let (package, name) = match workflow.split_once("::") {
        Some((p, w)) => (Some(p), w),
        None => (None, workflow),
    };
    let mut newest: std::collections::BTreeMap<&str, &PackageRow> = Default::default();
    for p in packages {
        if package.is_some_and(|want| want != p.name) {
            continue;
        }
        if version.is_some_and(|v| v != p.version) {
            continue;
        }
        // Rows come oldest first: later ones win.
        newest.insert(&p.name, p);
    }
    let candidates: Vec<(&PackageRow, usize)> = newest
        .values()
        .filter_map(|p| {
            p.metadata
                .workflows
                .iter()
                .position(|w| w.name == name)
                .map(|i| (*p, i))
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => {
            let known = newest
                .values()
                .flat_map(|p| p.metadata.workflows.iter().map(|w| w.name.as_str()));
            let hint = crate::suggest::did_you_mean(name, known);
            Err(LookupError::NotFound(match version {
                Some(v) => {
                    format!("workflow '{workflow}' version {v} not found in tenant {tenant}{hint}")
                }
                None => format!("workflow '{workflow}' not found in tenant {tenant}{hint}"),
            }))
        }
        many => Err(LookupError::Ambiguous(format!(
            "workflow '{workflow}' is defined by several packages of tenant {tenant}: {}; name one as PACKAGE::WORKFLOW",
            many.iter()
                .map(|(p, _)| format!("{}::{name}", p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<Uuid, Arc<RegisteredPackage>>,
    /// tenant → package name → versions, oldest registered first.
    by_tenant: HashMap<String, HashMap<String, Vec<Arc<RegisteredPackage>>>>,
    /// The task registry: namespace → the packages (versions) defining it,
    /// oldest registered first.
    tasks: HashMap<TaskNamespace, Vec<Arc<RegisteredPackage>>>,
}

/// The task and workflow registries.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("packages", &self.len())
            .finish()
    }
}

fn order_key(p: &RegisteredPackage) -> (i64, Uuid) {
    (p.registered_at, p.id)
}

impl Registry {
    /// Empty registries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a package (replacing one with the same id).
    pub fn insert(&self, package: Arc<RegisteredPackage>) {
        let mut inner = self.inner.write().expect("registry lock");
        if inner.by_id.contains_key(&package.id) {
            Self::remove_locked(&mut inner, package.id);
        }
        inner.by_id.insert(package.id, package.clone());
        let versions = inner
            .by_tenant
            .entry(package.tenant.clone())
            .or_default()
            .entry(package.name().to_string())
            .or_default();
        versions.push(package.clone());
        versions.sort_by_key(|p| order_key(p));
        for wf in &package.metadata().workflows {
            for t in &wf.tasks {
                let ns = TaskNamespace::new(&package.tenant, package.name(), &wf.name, &t.id);
                let defs = inner.tasks.entry(ns).or_default();
                defs.push(package.clone());
                defs.sort_by_key(|p| order_key(p));
            }
        }
    }

    /// Remove a package; returns it if it was there. Tasks already running
    /// hold their own `Arc` and finish undisturbed.
    pub fn remove(&self, id: Uuid) -> Option<Arc<RegisteredPackage>> {
        let mut inner = self.inner.write().expect("registry lock");
        Self::remove_locked(&mut inner, id)
    }

    fn remove_locked(inner: &mut Inner, id: Uuid) -> Option<Arc<RegisteredPackage>> {
        let package = inner.by_id.remove(&id)?;
        if let Some(names) = inner.by_tenant.get_mut(&package.tenant) {
            if let Some(versions) = names.get_mut(package.name()) {
                versions.retain(|p| p.id != id);
                if versions.is_empty() {
                    names.remove(package.name());
                }
            }
            if names.is_empty() {
                inner.by_tenant.remove(&package.tenant);
            }
        }
        for wf in &package.metadata().workflows {
            for t in &wf.tasks {
                let ns = TaskNamespace::new(&package.tenant, package.name(), &wf.name, &t.id);
                if let Some(defs) = inner.tasks.get_mut(&ns) {
                    defs.retain(|p| p.id != id);
                    if defs.is_empty() {
                        inner.tasks.remove(&ns);
                    }
                }
            }
        }
        Some(package)
    }

    /// The package with this id, whatever its tenant (for the host's own
    /// bookkeeping; user-facing lookups go through a tenant).
    pub fn get(&self, id: Uuid) -> Option<Arc<RegisteredPackage>> {
        self.inner
            .read()
            .expect("registry lock")
            .by_id
            .get(&id)
            .cloned()
    }

    /// How many packages are loaded.
    pub fn len(&self) -> usize {
        self.inner.read().expect("registry lock").by_id.len()
    }

    /// Whether no package is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any loaded package has this content hash.
    pub fn uses_hash(&self, hash: &ContentHash) -> bool {
        self.inner
            .read()
            .expect("registry lock")
            .by_id
            .values()
            .any(|p| p.content_hash() == *hash)
    }

    /// A package of `tenant` by name: the given version, or the active
    /// (newest registered) one.
    pub fn package(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Option<Arc<RegisteredPackage>> {
        let inner = self.inner.read().expect("registry lock");
        let versions = inner.by_tenant.get(tenant)?.get(name)?;
        match version {
            Some(v) => versions.iter().rev().find(|p| p.version() == v).cloned(),
            None => versions.last().cloned(),
        }
    }

    /// Every loaded package of `tenant`, every version.
    pub fn packages(&self, tenant: &str) -> Vec<Arc<RegisteredPackage>> {
        let inner = self.inner.read().expect("registry lock");
        let mut out: Vec<_> = inner
            .by_tenant
            .get(tenant)
            .map(|names| names.values().flatten().cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|p| order_key(p));
        out
    }

    /// Every loaded package, all tenants.
    pub fn all(&self) -> Vec<Arc<RegisteredPackage>> {
        let inner = self.inner.read().expect("registry lock");
        let mut out: Vec<_> = inner.by_id.values().cloned().collect();
        out.sort_by_key(|p| order_key(p));
        out
    }

    /// The workflows of `tenant`'s active package versions.
    pub fn workflows(&self, tenant: &str) -> Vec<WorkflowRef> {
        let inner = self.inner.read().expect("registry lock");
        let Some(names) = inner.by_tenant.get(tenant) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for versions in names.values() {
            if let Some(active) = versions.last() {
                for index in 0..active.metadata().workflows.len() {
                    out.push(WorkflowRef {
                        package: active.clone(),
                        index,
                    });
                }
            }
        }
        out.sort_by_key(|w| w.qualified_name());
        out
    }

    /// Find a workflow of `tenant` by `name` (`workflow` or
    /// `package::workflow`), in the active version of its package or in
    /// `version`.
    ///
    /// # Errors
    /// [`LookupError::NotFound`], or [`LookupError::Ambiguous`] when several
    /// packages define `workflow` (then name the package).
    pub fn find_workflow(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<WorkflowRef, LookupError> {
        let (package, workflow) = match name.split_once("::") {
            Some((p, w)) => (Some(p), w),
            None => (None, name),
        };
        let inner = self.inner.read().expect("registry lock");
        let names = inner.by_tenant.get(tenant);
        let mut candidates = Vec::new();
        for (pkg_name, versions) in names.into_iter().flatten() {
            if package.is_some_and(|p| p != pkg_name) {
                continue;
            }
            let chosen = match version {
                Some(v) => versions.iter().rev().find(|p| p.version() == v),
                None => versions.last(),
            };
            if let Some(p) = chosen
                && let Some(index) = p
                    .metadata()
                    .workflows
                    .iter()
                    .position(|w| w.name == workflow)
            {
                candidates.push(WorkflowRef {
                    package: p.clone(),
                    index,
                });
            }
        }
        match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(LookupError::NotFound(match version {
                Some(v) => format!("workflow '{name}' version {v} not found in tenant {tenant}"),
                None => format!("workflow '{name}' not found in tenant {tenant}"),
            })),
            _ => {
                let mut names: Vec<String> =
                    candidates.iter().map(WorkflowRef::qualified_name).collect();
                names.sort();
                Err(LookupError::Ambiguous(format!(
                    "workflow '{name}' is defined by several packages of tenant {tenant}: {}; name one as PACKAGE::WORKFLOW",
                    names.join(", ")
                )))
            }
        }
    }

    /// Look a task up by namespace: in the active version of its package,
    /// or in `version`.
    pub fn task(
        &self,
        ns: &TaskNamespace,
        version: Option<&str>,
    ) -> Option<(Arc<RegisteredPackage>, TaskMeta)> {
        let inner = self.inner.read().expect("registry lock");
        let defs = inner.tasks.get(ns)?;
        let package = match version {
            Some(v) => defs.iter().rev().find(|p| p.version() == v)?,
            None => {
                // The active version of the package, if it still defines the
                // task.
                let active = inner.by_tenant.get(&ns.tenant)?.get(&ns.package)?.last()?;
                defs.iter().find(|p| p.id == active.id)?
            }
        };
        let task = package
            .metadata()
            .workflow(&ns.workflow)?
            .task(&ns.task)?
            .clone();
        Some((package.clone(), task))
    }

    /// Every task namespace registered for `tenant`.
    pub fn task_namespaces(&self, tenant: &str) -> Vec<TaskNamespace> {
        let inner = self.inner.read().expect("registry lock");
        let mut out: Vec<TaskNamespace> = inner
            .tasks
            .keys()
            .filter(|ns| ns.tenant == tenant)
            .cloned()
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse_and_print() {
        let ns = TaskNamespace::parse("acme::etl::daily::load").unwrap();
        assert_eq!(ns.to_string(), "acme::etl::daily::load");
        assert!(TaskNamespace::parse("acme::etl::load").is_none());
        assert!(TaskNamespace::parse("a::::c::d").is_none());
    }
}
