//! The allowlist as pure rules: [`HostPattern`] (what a package declares
//! and an operator grants), [`EgressPolicy`] (the two keys of one call),
//! and which resolved addresses a request may reach ([`prohibited`]).
//!
//! A pattern is `[scheme://]host[:port]`:
//! - `host` is an exact name (`api.example.com`), a literal IPv4 or IPv6
//!   address (`127.0.0.1`, `[::1]`), a wildcard `*.example.com` that
//!   matches names *under* `example.com` but never `example.com` itself, or
//!   `*` for any host;
//! - `port` is a number or `*`; without one a pattern allows the default
//!   port of its scheme (80 for `http`, 443 for `https`);
//! - without a scheme both `http` and `https` are allowed.
//!
//! Names are compared without case and without a trailing dot.

use std::fmt;
use std::net::IpAddr;

/// The longest pattern, in bytes (a DNS name is at most 253).
pub const MAX_PATTERN_BYTES: usize = 300;

/// The scheme a pattern allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeRule {
    /// `http` and `https`.
    Any,
    /// Only `http`.
    Http,
    /// Only `https`.
    Https,
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// Any host (`*`).
    Any,
    /// Names strictly under this suffix (`*.example.com` keeps `example.com`).
    Under(String),
    /// Exactly this name.
    Name(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// The port part of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// The scheme's default port.
    Default,
    /// Any port (`:*`).
    Any,
    /// This port.
    Port(u16),
}

/// One allowlist entry: `[scheme://]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The scheme it allows.
    pub scheme: SchemeRule,
    /// The hosts it allows.
    pub host: HostRule,
    /// The ports it allows.
    pub port: PortRule,
    /// The text it was parsed from, as written.
    pub text: String,
}

/// Why a pattern did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{pattern}' is not a host pattern: {reason} (use [http://|https://]HOST[:PORT], HOST a name, an address, *.SUFFIX or *; PORT a number or *)"
)]
pub struct PatternError {
    /// The pattern, made printable.
    pub pattern: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl HostPattern {
    /// Parse `[scheme://]host[:port]`.
    ///
    /// # Errors
    /// [`PatternError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let fail = |reason| PatternError {
            pattern: crate::guest_text::printable(text)
                .chars()
                .take(80)
                .collect(),
            reason,
        };
        if text.is_empty() || text.len() > MAX_PATTERN_BYTES {
            return Err(fail("empty or too long"));
        }
        if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(fail("only printable ASCII without spaces"));
        }
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = if let Some(r) = lower.strip_prefix("https://") {
            (SchemeRule::Https, r)
        } else if let Some(r) = lower.strip_prefix("http://") {
            (SchemeRule::Http, r)
        } else if lower.contains("://") {
            return Err(fail("the scheme must be http or https"));
        } else {
            (SchemeRule::Any, lower.as_str())
        };
        if rest.contains('@') {
            return Err(fail("no user information"));
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(fail("no path"));
        }
        // Split off the port: `[v6]:port`, `host:port`.
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| fail("an unclosed '['"))?;
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(fail("text after ']'")),
            };
            (&r[..end], port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => PortRule::Default,
            Some("*") => PortRule::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortRule::Port(n),
                _ => return Err(fail("the port must be 1 to 65535 or *")),
            },
        };
        let host = if host == "*" {
            HostRule::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_dns_name(suffix) {
                return Err(fail("the wildcard's suffix must be a host name"));
            }
            HostRule::Under(suffix.trim_end_matches('.').to_string())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostRule::Ip(ip)
        } else if is_dns_name(host) {
            HostRule::Name(host.trim_end_matches('.').to_string())
        } else {
            return Err(fail("the host must be a name, an address, *.SUFFIX or *"));
        };
        Ok(Self {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` fits. `host` is lower case
    /// without a trailing dot (see [`Destination`]).
    pub fn allows(&self, dest: &Destination) -> bool {
        let scheme_ok = match self.scheme {
            SchemeRule::Any => true,
            SchemeRule::Http => !dest.https,
            SchemeRule::Https => dest.https,
        };
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Port(p) => p == dest.port,
            PortRule::Default => dest.port == if dest.https { 443 } else { 80 },
        };
        let host_ok = match (&self.host, &dest.ip) {
            (HostRule::Any, _) => true,
            (HostRule::Ip(want), Some(ip)) => want == ip,
            (HostRule::Ip(_), None) => false,
            (HostRule::Name(n), None) => *n == dest.host,
            (HostRule::Under(s), None) => dest
                .host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostRule::Name(_) | HostRule::Under(_), Some(_)) => false,
        };
        scheme_ok && port_ok && host_ok
    }

    /// Whether this pattern names `ip` literally and allows `port`: the only
    /// way to reach a prohibited address.
    pub fn literally_allows(&self, ip: IpAddr, https: bool, port: u16) -> bool {
        self.host == HostRule::Ip(ip)
            && self.allows(&Destination {
                https,
                host: ip.to_string(),
                ip: Some(ip),
                port,
            })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `labels.of.a-name`: 1 to 63 of `[a-z0-9-]` per label, up to 253 bytes.
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Where a request goes, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https` (else `http`).
    pub https: bool,
    /// The host as written in the URL, lower case, without a trailing dot
    /// or IPv6 brackets.
    pub host: String,
    /// The host when it is a literal address.
    pub ip: Option<IpAddr>,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
}

impl Destination {
    /// `scheme://host:port`, for messages and logs.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.ip {
            Some(IpAddr::V6(_)) => format!("{scheme}://[{}]:{}", self.host, self.port),
            _ => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// The two keys of one call: what its package declared (`http-hosts`) and
/// what its tenant was granted (HTTP grants for this package or every
/// package). A request goes out only when a pattern of each allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The package's `http-hosts` that parse.
    pub declared: Vec<HostPattern>,
    /// The tenant's HTTP grants that apply to the package and parse.
    pub granted: Vec<HostPattern>,
    /// The tenant, for messages.
    pub tenant: String,
    /// The package's name, for messages.
    pub package: String,
}

/// Why the policy refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Neither key allows it.
    Neither,
    /// The package does not declare it.
    NotDeclared,
    /// The tenant was not granted it.
    NotGranted,
}

impl EgressPolicy {
    /// Whether the policy allows anything at all.
    pub fn is_empty(&self) -> bool {
        self.declared.is_empty() || self.granted.is_empty()
    }

    /// The grant that lets `dest` through, or why none does.
    ///
    /// # Errors
    /// The missing key(s).
    pub fn check(&self, dest: &Destination) -> Result<&HostPattern, Denial> {
        let declared = self.declared.iter().any(|p| p.allows(dest));
        let granted = self.granted.iter().find(|p| p.allows(dest));
        match (declared, granted) {
            (true, Some(g)) => Ok(g),
            (false, None) => Err(Denial::Neither),
            (false, Some(_)) => Err(Denial::NotDeclared),
            (true, None) => Err(Denial::NotGranted),
        }
    }

    /// The refusal's text, as the guest receives it: it names the
    /// destination and the missing key, and says what would allow it.
    pub fn explain(&self, dest: &Destination, denial: &Denial) -> String {
        let origin = dest.origin();
        let grant_hint = format!(
            "an operator allows it with: culvert grant --tenant {} --package {} --http {}",
            self.tenant,
            self.package,
            grant_text(dest)
        );
        let declare_hint = format!(
            "the package must list it in its http-hosts (it declares: {})",
            list(&self.declared)
        );
        match denial {
            Denial::NotGranted => format!(
                "egress denied: {origin} is declared by package '{}' but not granted to tenant '{}'; {grant_hint}",
                self.package, self.tenant
            ),
            Denial::NotDeclared => format!(
                "egress denied: {origin} is granted to tenant '{}' but package '{}' does not declare it; {declare_hint}",
                self.tenant, self.package
            ),
            Denial::Neither => format!(
                "egress denied: {origin} is neither declared by package '{}' nor granted to tenant '{}'; {declare_hint}, and {grant_hint}",
                self.package, self.tenant
            ),
        }
    }
}

/// What `culvert grant --http` would take for `dest`.
fn grant_text(dest: &Destination) -> String {
    let default = dest.port == if dest.https { 443 } else { 80 };
    let host = match dest.ip {
        Some(IpAddr::V6(_)) => format!("[{}]", dest.host),
        _ => dest.host.clone(),
    };
    if default {
        host
    } else {
        format!("{host}:{}", dest.port)
    }
}

fn list(patterns: &[HostPattern]) -> String {
    if patterns.is_empty() {
        "nothing".into()
    } else {
        patterns
            .iter()
            .take(16)
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why an address is off limits unless granted literally, or `None` for a
/// public address: loopback, private (RFC 1918, unique local), link-local
/// (which holds the cloud metadata address 169.254.169.254), shared
/// (100.64/10), multicast, unspecified, broadcast, documentation and
/// benchmarking ranges, and IPv4 reached through IPv6 (mapped, NAT64,
/// 6to4) when the IPv4 address is itself off limits.
pub fn prohibited(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || o[0] >= 240 || v4.is_broadcast() {
                Some("multicast or reserved")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (carrier-grade NAT)")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("benchmarking")
            } else if v4.is_documentation() || (o[0] == 192 && o[1] == 0 && o[2] == 0) {
                Some("documentation or protocol assignment")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return prohibited(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfec0 {
                Some("site-local (deprecated)")
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                // The local-use NAT64 prefix (RFC 8215): whatever IPv4 it
                // carries is translated inside the operator's network.
                Some("local-use NAT64")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: the IPv4 address is in the last 32 bits.
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                prohibited(IpAddr::V4(v4)).map(|_| "IPv4 through NAT64")
            } else if s[0] == 0x2002 {
                let v4 = std::net::Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                );
                prohibited(IpAddr::V4(v4)).map(|_| "IPv4 through 6to4")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible (deprecated)")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(url_host: &str, https: bool, port: u16) -> Destination {
        let ip = url_host.parse().ok();
        Destination {
            https,
            host: url_host.to_string(),
            ip,
            port,
        }
    }

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_names_allow_default_ports_of_both_schemes() {
        let pat = p("api.example.com");
        assert!(pat.allows(&dest("api.example.com", true, 443)));
        assert!(pat.allows(&dest("api.example.com", false, 80)));
        assert!(!pat.allows(&dest("api.example.com", true, 8443)));
        assert!(!pat.allows(&dest("api.example.com", false, 443)));
        assert!(!pat.allows(&dest("x.api.example.com", true, 443)));
        assert!(!pat.allows(&dest("api.example.co", true, 443)));
        assert!(p("API.Example.com.").allows(&dest("api.example.com", true, 443)));
    }

    #[test]
    fn wildcards_never_match_the_bare_parent() {
        let pat = p("*.example.com");
        assert!(pat.allows(&dest("a.example.com", true, 443)));
        assert!(pat.allows(&dest("a.b.example.com", true, 443)));
        assert!(!pat.allows(&dest("example.com", true, 443)));
        assert!(!pat.allows(&dest("badexample.com", true, 443)));
        assert!(!pat.allows(&dest(".example.com", true, 443)));
        // A wildcard is for names: an address never matches it.
        assert!(!p("*.0.0.1").allows(&dest("127.0.0.1", true, 443)));
    }

    #[test]
    fn schemes_and_ports_are_part_of_a_pattern() {
        assert!(p("https://a.test").allows(&dest("a.test", true, 443)));
        assert!(!p("https://a.test").allows(&dest("a.test", false, 80)));
        assert!(p("http://a.test:8080").allows(&dest("a.test", false, 8080)));
        assert!(!p("http://a.test:8080").allows(&dest("a.test", true, 8080)));
        assert!(p("a.test:*").allows(&dest("a.test", true, 1)));
        assert!(p("*").allows(&dest("anything.test", true, 443)));
        assert!(!p("*").allows(&dest("anything.test", true, 444)));
        assert!(p("*:*").allows(&dest("10.0.0.1", false, 1)));
        assert!(p("[::1]:8080").allows(&dest("::1", false, 8080)));
        assert!(p("127.0.0.1:9").literally_allows("127.0.0.1".parse().unwrap(), false, 9));
        assert!(!p("*:*").literally_allows("127.0.0.1".parse().unwrap(), false, 9));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_rule() {
        for bad in [
            "",
            "ftp://a.test",
            "user@a.test",
            "a.test/path",
            "a.test:0",
            "a.test:99999",
            "a test",
            "-a.test",
            "*.",
            "a.*.test",
            "[::1",
        ] {
            let e = HostPattern::parse(bad).unwrap_err();
            assert!(e.to_string().contains("HOST[:PORT]"), "{bad}: {e}");
        }
    }

    #[test]
    fn both_keys_are_needed_and_the_refusal_names_the_missing_one() {
        let policy = EgressPolicy {
            declared: vec![p("a.test"), p("b.test")],
            granted: vec![p("a.test"), p("c.test")],
            tenant: "acme".into(),
            package: "fetch".into(),
        };
        assert_eq!(
            policy.check(&dest("a.test", true, 443)).unwrap().text,
            "a.test"
        );
        let b = dest("b.test", true, 443);
        assert_eq!(policy.check(&b), Err(Denial::NotGranted));
        let text = policy.explain(&b, &Denial::NotGranted);
        assert!(
            text.starts_with("egress denied: https://b.test:443"),
            "{text}"
        );
        assert!(text.contains("not granted to tenant 'acme'"), "{text}");
        assert!(text.contains("--http b.test"), "{text}");
        let c = dest("c.test", false, 8080);
        assert_eq!(policy.check(&c), Err(Denial::Neither));
        let c = dest("c.test", true, 443);
        assert_eq!(policy.check(&c), Err(Denial::NotDeclared));
        assert!(
            policy
                .explain(&c, &Denial::NotDeclared)
                .contains("does not declare it")
        );
    }

    #[test]
    fn internal_addresses_are_prohibited() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fec0::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(prohibited(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(prohibited(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
