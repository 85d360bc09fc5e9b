//! Dashboard sessions: a signed cookie naming the API key that logged in,
//! and the CSRF token forms carry.
//!
//! The cookie is `<key id>.<expiry in ms>.<MAC>`. The MAC is blake3 in
//! keyed mode (a pseudo-random function, which is what HMAC would give;
//! blake3 is already how keys are hashed, so no other crate is needed) over
//! the id and the expiry, under a 32-byte secret kept in the database
//! (`server_secrets`), so every host of a fleet accepts the cookies any
//! host issued. The cookie holds no secret and grants nothing alone: the
//! key it names is looked up on every request and must still be live, so
//! revoking the key ends its sessions on every host within a second.
//!
//! A form that changes something carries a CSRF token, the keyed hash of
//! the session cookie under another label: a page of another origin
//! cannot read it (and `SameSite=Strict` keeps the cookie off its requests
//! anyway).

/// The cookie's name.
pub const COOKIE: &str = "culvert_session";

/// How long a session lasts, in ms (12 hours).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The secret's name in `server_secrets`.
pub const SECRET_NAME: &str = "dashboard-session";

/// Signs and checks session cookies and CSRF tokens.
#[derive(Clone)]
pub struct Signer {
    secret: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// A signer with `secret`.
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The keyed hash of `data` for `purpose`.
    fn mac(&self, purpose: &str, data: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.secret);
        h.update(purpose.as_bytes());
        h.update(&[0]);
        h.update(data.as_bytes());
        h.finalize()
    }

    /// A session for the key with public id `key_id`, from `now_ms`.
    pub fn issue(&self, key_id: &str, now_ms: i64) -> String {
        let body = format!("{key_id}.{}", now_ms + SESSION_TTL_MS);
        format!("{body}.{}", self.mac("session", &body).to_hex())
    }

    /// The key id a session cookie names, if it is one this fleet signed
    /// and it has not expired at `now_ms`.
    pub fn verify(&self, cookie: &str, now_ms: i64) -> Option<String> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let (id, expires) = body.split_once('.')?;
        // The id has the shape of a key's (so nothing else is looked up).
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now_ms {
            return None;
        }
        let given = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash compares in constant time.
        (given == self.mac("session", body)).then(|| id.to_string())
    }

    /// The CSRF token of the session `cookie`.
    pub fn csrf(&self, cookie: &str) -> String {
        self.mac("csrf", cookie).to_hex().to_string()
    }

    /// Whether `token` is the CSRF token of `cookie`.
    pub fn check_csrf(&self, cookie: &str, token: &str) -> bool {
        blake3::Hash::from_hex(token).is_ok_and(|t| t == self.mac("csrf", cookie))
    }
}

/// The session cookie among a request's `Cookie` headers.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL_MS / 1000
    )
}

/// `Set-Cookie` that clears the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_only_as_issued() {
        let s = Signer::new([7; 32]);
        let c = s.issue("0123456789ab", 1_000);
        assert_eq!(s.verify(&c, 2_000).as_deref(), Some("0123456789ab"));
        // Expired.
        assert_eq!(s.verify(&c, 1_000 + SESSION_TTL_MS), None);
        // Another secret (another fleet).
        assert_eq!(Signer::new([8; 32]).verify(&c, 2_000), None);
        // Tampered: another id, a later expiry, a flipped MAC.
        let (body, mac) = c.rsplit_once('.').unwrap();
        let other = body.replace("0123456789ab", "0123456789ac");
        assert_eq!(s.verify(&format!("{other}.{mac}"), 2_000), None);
        let later = format!("0123456789ab.{}.{mac}", 10 * SESSION_TTL_MS);
        assert_eq!(s.verify(&later, 2_000), None);
        let flipped = format!("{body}.{}", mac.replace(&mac[..1], "x"));
        assert_eq!(s.verify(&flipped, 2_000), None);
        // Not a key id.
        let bad = s.issue("../../etc", 1_000);
        assert_eq!(s.verify(&bad, 2_000), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let s = Signer::new([7; 32]);
        let (a, b) = (s.issue("0123456789ab", 1), s.issue("ba9876543210", 1));
        assert!(s.check_csrf(&a, &s.csrf(&a)));
        assert!(!s.check_csrf(&b, &s.csrf(&a)));
        assert!(!s.check_csrf(&a, ""));
        assert!(!s.check_csrf(&a, "zz"));
    }
}
