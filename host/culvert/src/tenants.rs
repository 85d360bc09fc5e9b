//! Tenants: the isolation boundary, with per-tenant limits and capability
//! grants.
//!
//! Every package, execution, task, event and registry entry belongs to one
//! tenant. Lookups across tenants answer "not found", never "forbidden", so
//! a guessed id or name leaks nothing. `public` exists from the start.
//!
//! ## Limits
//!
//! [`TenantLimits`] are stored with the tenant and enforced:
//! - at registration: `max_package_bytes`, `max_packages`;
//! - when an execution starts: `max_queued_executions` (unfinished ones);
//! - when tasks are claimed: `max_concurrent_tasks`, over every host;
//! - in each task's sandbox: `max_memory_bytes`, `max_task_timeout_ms` (a
//!   ceiling over what the package declares), `fuel_per_call` (when the
//!   engine counts fuel), `max_output_bytes` and `max_cpu_cores`;
//! - on the data around the sandbox: `max_context_bytes` (a task's output,
//!   and its merged input, checked while merging), `max_final_context_bytes`
//!   (an execution's final context, assembled one leaf at a time) and
//!   `max_execution_output_bytes` (every output an execution stores,
//!   counted in the transaction that stores each).
//!
//! And on who may add packages: `require_signature` (a signature by a key
//! the tenant trusts, checked before anything is compiled), `on_untrust`
//! (what an untrusted key's packages do) and `allow_tenant_key_trust`
//! (whether the tenant's own API keys manage its trusted keys).
//!
//! A request over a quota fails with [`crate::Error::Quota`], naming it.
//!
//! ## Capabilities: the two-key rule
//!
//! A package declares what it wants (`capabilities` in its metadata); an
//! operator grants capabilities per tenant, optionally per package
//! ([`Grant`]). A capability is usable only when both keys turn:
//!
//! | capability | declared and granted | otherwise |
//! |---|---|---|
//! | env var `NAME` | set to the granted value | absent: the guest sees no such variable |
//! | directory `/path` | the granted host directory, preopened read-only or read-write | not preopened: opening anything there fails |
//! | wall clock | the real clock | a clock frozen at the Unix epoch |
//! | random | the host's secure generator | a deterministic generator |
//! | outbound HTTP to a host pattern | requests to it go out, policed on each request (see `crate::egress`) | every request fails in the guest, naming the host and the missing key |
//!
//! Sockets and name lookups are never granted.

use serde::{Deserialize, Serialize};

/// The name of the tenant that always exists.
pub const PUBLIC: &str = "public";

/// Per-tenant limits. Each field documents its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantLimits {
    /// Linear memory of one task instance, in bytes. Default 64 MiB. The
    /// engine's own ceiling (256 MiB by default) caps it.
    pub max_memory_bytes: u64,
    /// Ceiling on any task's timeout, in ms. Default 300,000 (5 min).
    pub max_task_timeout_ms: u64,
    /// Fuel per task call, when the engine counts fuel (`serve --fuel`).
    /// Default none (unlimited).
    pub fuel_per_call: Option<u64>,
    /// Tasks of this tenant running at once, over every host. Default 64.
    pub max_concurrent_tasks: u32,
    /// Executions of this tenant not finished yet. Default 1,000.
    pub max_queued_executions: u32,
    /// Size of one package, in bytes. Default 32 MiB.
    pub max_package_bytes: u64,
    /// Registered packages (every version counts). Default 100.
    pub max_packages: u32,
    /// Stdout, stderr and log bytes of one task call. Default 1 MiB.
    pub max_output_bytes: u64,
    /// The most CPU this tenant's guests may use together, in cores (0.5 is
    /// half a core), on each host. Default none: its fair share (see
    /// [`crate::sandbox::CpuLedger`]).
    pub max_cpu_cores: Option<f64>,
    /// One context, in bytes of compact JSON: a task's output, and a task's
    /// input merged from its dependencies' outputs (checked while merging).
    /// Default 16 MiB.
    pub max_context_bytes: u64,
    /// An execution's final context (the merge of its leaves' outputs), in
    /// bytes. Default 16 MiB.
    pub max_final_context_bytes: u64,
    /// All task outputs one execution stores together (skipped tasks'
    /// pass-through outputs included), in bytes. Default 256 MiB.
    pub max_execution_output_bytes: u64,
    /// Schedules set at run time (declared ones come with packages).
    /// Default 100.
    pub max_schedules: u32,
    /// The shortest interval between two due times of one schedule, in
    /// ms. Default 1,000 (1 s).
    pub min_schedule_interval_ms: u64,
    /// Outbound HTTP requests one task call may make (refused ones count).
    /// Default 64.
    pub max_http_requests_per_call: u32,
    /// Response body bytes one task call may receive over HTTP, all its
    /// requests together. Default 16 MiB.
    pub max_http_response_bytes: u64,
    /// One outbound HTTP request, from its start to the end of its
    /// response body, in ms; never past the task's own deadline. Default
    /// 30,000 (30 s).
    pub http_request_timeout_ms: u64,
    /// Outbound HTTP connections this tenant's tasks may hold open at once
    /// on one host. Default 16.
    pub max_http_connections: u32,
    /// Refuse packages that are not signed by a key this tenant trusts
    /// (`culvert key trust`). Default off.
    pub require_signature: bool,
    /// What happens to the packages a key signed once it is untrusted.
    /// Default [`OnUntrust::Keep`].
    pub on_untrust: OnUntrust,
    /// Whether this tenant's own API keys may trust and untrust its signing
    /// keys (otherwise only an operator may). Default off.
    pub allow_tenant_key_trust: bool,
}

/// What an untrusted key's packages do (the `on_untrust` limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUntrust {
    /// They stay loaded and runnable; `package list` marks them.
    #[default]
    Keep,
    /// They stop loading at the next reconcile pass on every host (and load
    /// again if the key is trusted again).
    Disable,
}

impl OnUntrust {
    /// `keep` or `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUntrust::Keep => "keep",
            OnUntrust::Disable => "disable",
        }
    }
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 * 1024 * 1024,
            max_task_timeout_ms: 300_000,
            fuel_per_call: None,
            max_concurrent_tasks: 64,
            max_queued_executions: 1000,
            max_package_bytes: 32 * 1024 * 1024,
            max_packages: 100,
            max_output_bytes: 1024 * 1024,
            max_cpu_cores: None,
            max_context_bytes: 16 * 1024 * 1024,
            max_final_context_bytes: 16 * 1024 * 1024,
            max_execution_output_bytes: 256 * 1024 * 1024,
            max_schedules: 100,
            min_schedule_interval_ms: 1000,
            max_http_requests_per_call: 64,
            max_http_response_bytes: 16 * 1024 * 1024,
            http_request_timeout_ms: 30_000,
            max_http_connections: 16,
            require_signature: false,
            on_untrust: OnUntrust::Keep,
            allow_tenant_key_trust: false,
        }
    }
}

impl TenantLimits {
    /// Set `key` to `value` (as `culvert tenant update --set key=value`
    /// takes them).
    ///
    /// # Errors
    /// An unknown key or a value that is not a number (or `none` for
    /// `fuel_per_call`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let bytes = |v: &str| -> Result<u64, String> {
            parse_size(v).ok_or_else(|| {
                format!("'{v}' is not a size for {key} (e.g. 1048576, 64K, 32M, 1G)")
            })
        };
        let count = |v: &str| -> Result<u64, String> {
            v.trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("'{v}' is not a number for {key}"))
        };
        let small = |n: u64| n.min(u32::MAX as u64) as u32;
        let flag = |v: &str| -> Result<bool, String> {
            match v.trim() {
                "true" | "on" | "yes" => Ok(true),
                "false" | "off" | "no" => Ok(false),
                _ => Err(format!("'{v}' is not true or false for {key}")),
            }
        };
        let mut next = self.clone();
        match key {
            "max_memory_bytes" => next.max_memory_bytes = bytes(value)?,
            "max_task_timeout_ms" => next.max_task_timeout_ms = count(value)?,
            "fuel_per_call" => {
                next.fuel_per_call = if value == "none" {
                    None
                } else {
                    Some(count(value)?)
                }
            }
            "max_concurrent_tasks" => next.max_concurrent_tasks = small(count(value)?),
            "max_queued_executions" => next.max_queued_executions = small(count(value)?),
            "max_package_bytes" => next.max_package_bytes = bytes(value)?,
            "max_packages" => next.max_packages = small(count(value)?),
            "max_output_bytes" => next.max_output_bytes = bytes(value)?,
            "max_context_bytes" => next.max_context_bytes = bytes(value)?,
            "max_final_context_bytes" => next.max_final_context_bytes = bytes(value)?,
            "max_execution_output_bytes" => next.max_execution_output_bytes = bytes(value)?,
            "max_schedules" => next.max_schedules = small(count(value)?),
            "min_schedule_interval_ms" => next.min_schedule_interval_ms = count(value)?,
            "max_http_requests_per_call" => next.max_http_requests_per_call = small(count(value)?),
            "max_http_response_bytes" => next.max_http_response_bytes = bytes(value)?,
            "http_request_timeout_ms" => next.http_request_timeout_ms = count(value)?,
            "max_http_connections" => next.max_http_connections = small(count(value)?),
            "require_signature" => next.require_signature = flag(value)?,
            "allow_tenant_key_trust" => next.allow_tenant_key_trust = flag(value)?,
            "on_untrust" => {
                next.on_untrust = match value.trim() {
                    "keep" => OnUntrust::Keep,
                    "disable" => OnUntrust::Disable,
                    _ => return Err(format!("'{value}' is not keep or disable for {key}")),
                }
            }
            "max_cpu_cores" => {
                next.max_cpu_cores = if value == "none" {
                    None
                } else {
                    let cores: f64 = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("'{value}' is not a number of cores for {key}"))?;
                    if !(cores > 0.0 && cores.is_finite()) {
                        return Err(format!("{key} must be above 0"));
                    }
                    Some(cores)
                }
            }
            _ => {
                return Err(format!(
                    "unknown limit '{key}': use one of {}",
                    Self::KEYS.join(", ")
                ));
            }
        }
        if next.max_concurrent_tasks == 0
            || next.max_task_timeout_ms == 0
            || next.max_memory_bytes == 0
            || next.max_context_bytes == 0
            || next.max_final_context_bytes == 0
            || next.max_execution_output_bytes == 0
            || next.http_request_timeout_ms == 0
            || next.max_http_connections == 0
        {
            return Err(format!("{key} must be above 0"));
        }
        *self = next;
        Ok(())
    }

    /// The limit names [`set`](Self::set) accepts.
    pub const KEYS: &'static [&'static str] = &[
        "max_memory_bytes",
        "max_task_timeout_ms",
        "fuel_per_call",
        "max_concurrent_tasks",
        "max_queued_executions",
        "max_package_bytes",
        "max_packages",
        "max_output_bytes",
        "max_cpu_cores",
        "max_context_bytes",
        "max_final_context_bytes",
        "max_execution_output_bytes",
        "max_schedules",
        "min_schedule_interval_ms",
        "max_http_requests_per_call",
        "max_http_response_bytes",
        "http_request_timeout_ms",
        "max_http_connections",
        "require_signature",
        "on_untrust",
        "allow_tenant_key_trust",
    ];

    /// The egress limits of one task call.
    pub fn egress(&self) -> crate::egress::EgressLimits {
        crate::egress::EgressLimits {
            max_requests: self.max_http_requests_per_call,
            max_response_bytes: self.max_http_response_bytes,
            request_timeout: std::time::Duration::from_millis(self.http_request_timeout_ms),
            max_connections: self.max_http_connections,
        }
    }
}

/// `123`, `64k`, `64KiB`, `32M`, `1G` (powers of 1024).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let lower = v.to_ascii_lowercase();
    let (digits, mult) = [
        ("gib", 1u64 << 30),
        ("mib", 1 << 20),
        ("kib", 1 << 10),
        ("g", 1 << 30),
        ("m", 1 << 20),
        ("k", 1 << 10),
    ]
    .iter()
    .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|d| (d.to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    digits
        .trim()
        .replace('_', "")
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
}

/// A tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRow {
    /// Its name.
    pub name: String,
    /// Its limits.
    pub limits: TenantLimits,
    /// Created, in ms.
    pub created_at: i64,
}

/// What a grant gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// An environment variable: `name` is the variable, `value` its value.
    Env,
    /// A directory: `name` is the guest path, `value` the host directory.
    Dir,
    /// Outbound HTTP to the hosts of pattern `name`
    /// (`[scheme://]host[:port]`; see [`crate::HostPattern`]).
    Http,
    /// The real wall clock.
    WallClock,
    /// The secure random generator.
    Random,
}

impl GrantKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Env => "env",
            GrantKind::Dir => "dir",
            GrantKind::Http => "http",
            GrantKind::WallClock => "wall_clock",
            GrantKind::Random => "random",
        }
    }

    /// Parse [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "env" => GrantKind::Env,
            "dir" => GrantKind::Dir,
            "http" => GrantKind::Http,
            "wall_clock" | "wall-clock" => GrantKind::WallClock,
            "random" => GrantKind::Random,
            _ => return None,
        })
    }
}

/// One capability granted to a tenant (or to one of its packages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The tenant.
    pub tenant: String,
    /// The package name it is limited to; empty for every package.
    pub package: String,
    /// What it gives.
    pub kind: GrantKind,
    /// The env var, guest path or HTTP host; empty for the clock and
    /// random.
    pub name: String,
    /// The env var's value or the host directory; empty otherwise.
    pub value: String,
    /// For directories: whether writes are allowed.
    pub writable: bool,
}

impl Grant {
    /// Whether it applies to `package`.
    pub fn applies_to(&self, package: &str) -> bool {
        self.package.is_empty() || self.package == package
    }
}

/// The capabilities a call of `package` may use: what it declared
/// (`declared`) and its tenant was granted (`grants`), both.
pub fn resolve_grants(
    declared: &crate::package::CapabilityRequest,
    grants: &[Grant],
    tenant: &str,
    package: &str,
) -> crate::sandbox::SandboxGrants {
    // A grant for this package wins over a tenant-wide one.
    let granted = |kind: GrantKind, name: &str| {
        let matching = |g: &&Grant| g.kind == kind && g.name == name;
        grants
            .iter()
            .filter(matching)
            .find(|g| g.package == package)
            .or_else(|| {
                grants
                    .iter()
                    .filter(matching)
                    .find(|g| g.package.is_empty())
            })
    };
    crate::sandbox::SandboxGrants {
        env: declared
            .env
            .iter()
            .filter_map(|var| granted(GrantKind::Env, var).map(|g| (var.clone(), g.value.clone())))
            .collect(),
        dirs: declared
            .dirs
            .iter()
            .filter_map(|d| {
                granted(GrantKind::Dir, &d.guest_path).map(|g| {
                    (
                        std::path::PathBuf::from(&g.value),
                        d.guest_path.clone(),
                        d.writable && g.writable,
                    )
                })
            })
            .collect(),
        wall_clock: declared.wall_clock && granted(GrantKind::WallClock, "").is_some(),
        random: declared.random && granted(GrantKind::Random, "").is_some(),
        // An allowlist: the union of the tenant-wide and this package's
        // grants, met by what the package declares, request by request.
        http: std::sync::Arc::new(crate::egress::EgressPolicy {
            declared: declared
                .http_hosts
                .iter()
                .filter_map(|h| crate::egress::HostPattern::parse(h).ok())
                .collect(),
            granted: grants
                .iter()
                .filter(|g| g.kind == GrantKind::Http && g.applies_to(package))
                .filter_map(|g| crate::egress::HostPattern::parse(&g.name).ok())
                .collect(),
            tenant: tenant.to_string(),
            package: package.to_string(),
        }),
    }
}

/// Validate a tenant name: a short slug.
///
/// # Errors
/// A message naming the rule.
pub fn validate_name(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && tenant.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant name '{}': use 1 to 63 of [a-z0-9_-], starting with a letter or digit",
            crate::guest_text::printable(tenant)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("1_000"), Some(1000));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn signing_policy_is_set_in_words_and_checked() {
        let mut l = TenantLimits::default();
        assert!(!l.require_signature);
        assert_eq!(l.on_untrust, OnUntrust::Keep);
        l.set("require_signature", "true").unwrap();
        l.set("on_untrust", "disable").unwrap();
        l.set("allow_tenant_key_trust", "on").unwrap();
        assert!(l.require_signature && l.allow_tenant_key_trust);
        assert_eq!(l.on_untrust, OnUntrust::Disable);
        assert!(l.set("require_signature", "maybe").is_err());
        assert!(l.set("on_untrust", "delete").is_err());
        assert!(l.require_signature, "a refused value changes nothing");
        // Limits stored before these existed read as the defaults.
        let old: TenantLimits = serde_json::from_str(r#"{"max_packages": 3}"#).unwrap();
        assert!(!old.require_signature);
        assert_eq!(old.on_untrust, OnUntrust::Keep);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["on_untrust"], "disable");
    }

    fn dir_grant(package: &str, value: &str, writable: bool) -> Grant {
        Grant {
            tenant: "t".into(),
            package: package.into(),
            kind: GrantKind::Dir,
            name: "/data".into(),
            value: value.into(),
            writable,
        }
    }

    #[test]
    fn a_directory_is_writable_only_when_both_keys_say_so() {
        let declared = |writable: bool| crate::package::CapabilityRequest {
            dirs: vec![crate::package::DirRequest {
                guest_path: "/data".into(),
                writable,
            }],
            ..Default::default()
        };
        for (package_wants, granted, expected) in [
            (true, true, true),
            (true, false, false),
            // The package side: granted read-write, declared read-only.
            (false, true, false),
            (false, false, false),
        ] {
            let grants = [dir_grant("", "/srv/data", granted)];
            let resolved = resolve_grants(&declared(package_wants), &grants, "t", "p");
            assert_eq!(
                resolved.dirs,
                vec![("/srv/data".into(), "/data".to_string(), expected)],
                "declared writable {package_wants}, granted writable {granted}"
            );
        }
    }

    #[test]
    fn a_package_grant_wins_over_a_tenant_wide_one_in_any_order() {
        let declared = crate::package::CapabilityRequest {
            dirs: vec![crate::package::DirRequest {
                guest_path: "/data".into(),
                writable: true,
            }],
            ..Default::default()
        };
        let tenant_wide = dir_grant("", "/srv/tenant", true);
        let for_p = dir_grant("p", "/srv/p", false);
        let for_other = dir_grant("q", "/srv/q", true);
        for grants in [
            vec![tenant_wide.clone(), for_p.clone(), for_other.clone()],
            vec![for_other.clone(), for_p.clone(), tenant_wide.clone()],
        ] {
            let resolved = resolve_grants(&declared, &grants, "t", "p");
            assert_eq!(
                resolved.dirs,
                vec![("/srv/p".into(), "/data".to_string(), false)]
            );
            // Another package without its own grant gets the tenant-wide one.
            let resolved = resolve_grants(&declared, &grants, "t", "r");
            assert_eq!(
                resolved.dirs,
                vec![("/srv/tenant".into(), "/data".to_string(), true)]
            );
        }
    }

    #[test]
    fn http_grants_are_an_allowlist_for_the_package_they_apply_to() {
        let declared = crate::package::CapabilityRequest {
            http_hosts: vec!["*.example.com".into(), "bad pattern".into()],
            ..Default::default()
        };
        let http = |package: &str, name: &str| Grant {
            tenant: "t".into(),
            package: package.into(),
            kind: GrantKind::Http,
            name: name.into(),
            value: String::new(),
            writable: false,
        };
        let grants = [
            http("", "a.example.com"),
            http("p", "b.example.com"),
            http("q", "c.example.com"),
        ];
        let resolved = resolve_grants(&declared, &grants, "t", "p");
        let texts: Vec<&str> = resolved
            .http
            .granted
            .iter()
            .map(|g| g.text.as_str())
            .collect();
        assert_eq!(texts, ["a.example.com", "b.example.com"]);
        assert_eq!(
            resolved.http.declared.len(),
            1,
            "an unparsable pattern allows nothing"
        );
        assert_eq!(
            (
                resolved.http.tenant.as_str(),
                resolved.http.package.as_str()
            ),
            ("t", "p")
        );
        assert!(resolve_grants(&declared, &[], "t", "p").http.is_empty());
    }

    #[test]
    fn limits_are_set_by_name() {
        let mut l = TenantLimits::default();
        l.set("max_memory_bytes", "16M").unwrap();
        l.set("fuel_per_call", "1000000").unwrap();
        assert_eq!(l.max_memory_bytes, 16 << 20);
        assert_eq!(l.fuel_per_call, Some(1_000_000));
        l.set("fuel_per_call", "none").unwrap();
        assert_eq!(l.fuel_per_call, None);
        assert!(
            l.set("max_bananas", "1")
                .unwrap_err()
                .contains("unknown limit")
        );
        assert!(l.set("max_concurrent_tasks", "0").is_err());
        assert_eq!(
            l.max_concurrent_tasks, 64,
            "a refused value changes nothing"
        );
        l.set("max_task_timeout_ms", "1500").unwrap();
        l.set("max_cpu_cores", "0.5").unwrap();
        assert_eq!(l.max_cpu_cores, Some(0.5));
        assert!(l.set("max_cpu_cores", "-1").is_err());
        l.set("max_cpu_cores", "none").unwrap();
        assert_eq!(l.max_cpu_cores, None);
        l.set("max_http_response_bytes", "1M").unwrap();
        l.set("http_request_timeout_ms", "2500").unwrap();
        l.set("max_http_requests_per_call", "5").unwrap();
        l.set("max_http_connections", "2").unwrap();
        let e = l.egress();
        assert_eq!(
            (
                e.max_response_bytes,
                e.request_timeout.as_millis(),
                e.max_requests,
                e.max_connections
            ),
            (1 << 20, 2500, 5, 2)
        );
        assert!(l.set("http_request_timeout_ms", "0").is_err());
        assert!(
            l.set("max_task_timeout_ms", "1m").is_err(),
            "durations take no size suffix"
        );
    }

    #[test]
    fn tenant_names_are_slugs() {
        assert!(validate_name("acme-2").is_ok());
        assert!(validate_name("Acme").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn partial_limits_fill_in_defaults() {
        let l: TenantLimits = serde_json::from_str(r#"{"max_packages": 3}"#).unwrap();
        assert_eq!(l.max_packages, 3);
        assert_eq!(l.max_concurrent_tasks, 64);
    }
}
