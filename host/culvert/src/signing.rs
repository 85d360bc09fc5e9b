//! Package signatures as pure rules: Ed25519 key pairs and their files
//! ([`SecretKeyFile`], [`PublicKeyFile`]), the detached signature file
//! ([`SignatureFile`], `FILE.sig`), and verifying one against a package's
//! bytes ([`verify`]) before anything is compiled.
//!
//! A signature covers, in one domain-separated message
//! ([`SignatureFile::message`]): the format version, the blake3 content hash
//! of the component, the package name and version its `describe` returns,
//! the signing time and the key id. The hash ties it to the bytes; the name
//! and version, checked against `describe` once the package is loaded,
//! keep a signature for one package from being replayed onto another name or
//! version built from other bytes; the key id names the signer.
//!
//! Every file is JSON with base64 fields and a `format` that names its
//! version, so another tool can write them (docs/OPERATIONS.md, "Signing
//! packages").
//!
//! A leaf: it imports nothing from the rest of the crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The `format` of key files.
pub const KEY_FORMAT: &str = "culvert-key-v1";
/// The `format` of signature files.
pub const SIGNATURE_FORMAT: &str = "culvert-signature-v1";
/// The one algorithm.
pub const ALGORITHM: &str = "ed25519";
/// The largest key or signature file read, in bytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024;

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The file is not a key or signature file of a known format.
    #[error("not a {expected} file: {reason}")]
    Malformed {
        /// What was expected (`culvert-signature-v1`, ...).
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The signature is for other bytes.
    #[error(
        "the signature by key {key_id} is for content {signed}, but the package's content hash is {actual}: the package changed after signing, or the signature is another package's; sign this file with `culvert package sign`"
    )]
    HashMismatch {
        /// The signer.
        key_id: String,
        /// The hash the signature covers.
        signed: String,
        /// The package's hash.
        actual: String,
    },
    /// The public key that verifies it is not the one the file names.
    #[error("the signature names key {named}, but was checked with key {given}")]
    WrongKey {
        /// The key id in the signature file.
        named: String,
        /// The key id of the key given.
        given: String,
    },
    /// The signature does not verify.
    #[error(
        "the signature by key {key_id} does not verify: the signature file was changed after signing; sign the package again with `culvert package sign`"
    )]
    BadSignature {
        /// The signer.
        key_id: String,
    },
    /// The signature covers another name or version than the package's.
    #[error(
        "the signature by key {key_id} is for {signed}, but the package is {actual}: a signature cannot be moved to another name or version; sign this build with `culvert package sign`"
    )]
    Replayed {
        /// The signer.
        key_id: String,
        /// `name@version` signed.
        signed: String,
        /// `name@version` the package's `describe` returned.
        actual: String,
    },
    /// The tenant requires signatures and the package came without one.
    #[error(
        "tenant '{tenant}' requires a signature (require_signature) and the package has none: sign it with `culvert package sign FILE --key NAME.key` and add FILE with FILE.sig next to it"
    )]
    Missing {
        /// The tenant.
        tenant: String,
    },
    /// No key of that id is trusted for the tenant.
    #[error(
        "the signature is by key {key_id}, which tenant '{tenant}' does not trust: trust it with `culvert key trust --tenant {tenant} --name NAME NAME.pub`"
    )]
    UntrustedKey {
        /// The signer.
        key_id: String,
        /// The tenant.
        tenant: String,
    },
    /// The key was trusted for the tenant and has been untrusted.
    #[error(
        "the signature is by key {key_id}, which tenant '{tenant}' untrusted (revoked) at {untrusted_at} ms: sign the package with a trusted key"
    )]
    RevokedKey {
        /// The signer.
        key_id: String,
        /// The tenant.
        tenant: String,
        /// When it was untrusted, in ms since the epoch.
        untrusted_at: i64,
    },
}

impl SignatureError {
    /// A stable snake_case name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::Malformed { .. } => "malformed_signature",
            SignatureError::HashMismatch { .. } => "signature_hash_mismatch",
            SignatureError::WrongKey { .. } => "signature_wrong_key",
            SignatureError::BadSignature { .. } => "bad_signature",
            SignatureError::Replayed { .. } => "signature_replayed",
            SignatureError::Missing { .. } => "signature_missing",
            SignatureError::UntrustedKey { .. } => "signature_untrusted_key",
            SignatureError::RevokedKey { .. } => "signature_revoked_key",
        }
    }

    /// The key id the refusal is about, when it names one.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            SignatureError::Malformed { .. } | SignatureError::Missing { .. } => None,
            SignatureError::WrongKey { named, .. } => Some(named),
            SignatureError::HashMismatch { key_id, .. }
            | SignatureError::BadSignature { key_id }
            | SignatureError::Replayed { key_id, .. }
            | SignatureError::UntrustedKey { key_id, .. }
            | SignatureError::RevokedKey { key_id, .. } => Some(key_id),
        }
    }
}

/// A public key a tenant trusts (or trusted: `untrusted_at` is set once it
/// is untrusted; the row stays, so that its packages can be marked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// The tenant that trusts it.
    pub tenant: String,
    /// [`key_id`] of the key.
    pub key_id: String,
    /// The operator's name for it (`--name`).
    pub name: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public_key: String,
    /// When it was trusted, in ms since the epoch.
    pub trusted_at: i64,
    /// Who trusted it: an API key's name and id, or `(command line)`.
    pub trusted_by: String,
    /// When it was untrusted, if it was.
    pub untrusted_at: Option<i64>,
    /// Who untrusted it.
    pub untrusted_by: Option<String>,
}

impl TrustedKey {
    /// Whether it is trusted now.
    pub fn is_trusted(&self) -> bool {
        self.untrusted_at.is_none()
    }

    /// Its public key file.
    pub fn public_file(&self) -> PublicKeyFile {
        PublicKeyFile {
            format: KEY_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: self.key_id.clone(),
            public_key: self.public_key.clone(),
        }
    }
}

/// The policy check of a registration, before anything is compiled: a
/// signature must be there, by a key `tenant` trusts now (`key` is the
/// tenant's row for the signature's key id, if any), over `content_hash`.
///
/// # Errors
/// [`SignatureError::Missing`], [`SignatureError::UntrustedKey`],
/// [`SignatureError::RevokedKey`], and what [`verify`] refuses.
pub fn check_trusted(
    tenant: &str,
    sig: Option<&SignatureFile>,
    key: Option<&TrustedKey>,
    content_hash: &str,
) -> Result<(), SignatureError> {
    let sig = sig.ok_or_else(|| SignatureError::Missing {
        tenant: tenant.to_string(),
    })?;
    let key = key
        .filter(|k| k.tenant == tenant && k.key_id == sig.key_id)
        .ok_or_else(|| SignatureError::UntrustedKey {
            key_id: sig.key_id.clone(),
            tenant: tenant.to_string(),
        })?;
    if let Some(at) = key.untrusted_at {
        return Err(SignatureError::RevokedKey {
            key_id: key.key_id.clone(),
            tenant: tenant.to_string(),
            untrusted_at: at,
        });
    }
    verify(sig, content_hash, &key.public_file())
}

/// The id of a public key: 16 hex characters of a domain-separated blake3
/// of its 32 bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"culvert-key-id-v1\0");
    h.update(public_key);
    h.finalize().to_hex()[..16].to_string()
}

/// `NAME.key`: a secret key. Keep it to the signer (the CLI writes it
/// with mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKeyFile {
    /// [`KEY_FORMAT`].
    pub format: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The key id of its public half.
    pub key_id: String,
    /// The 32-byte Ed25519 seed, base64.
    pub secret_key: String,
}

/// `NAME.pub`: a public key, for `culvert key trust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyFile {
    /// [`KEY_FORMAT`].
    pub format: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// [`key_id`] of `public_key`.
    pub key_id: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public_key: String,
}

/// A new key pair from the operating system's random generator.
///
/// # Errors
/// When the generator fails.
pub fn generate() -> Result<(SecretKeyFile, PublicKeyFile), String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no random bytes: {e}"))?;
    let signing = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = signing.verifying_key().to_bytes();
    let id = key_id(&public);
    Ok((
        SecretKeyFile {
            format: KEY_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: id.clone(),
            secret_key: B64.encode(signing.to_bytes()),
        },
        PublicKeyFile {
            format: KEY_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: id,
            public_key: B64.encode(public),
        },
    ))
}

fn malformed(expected: &'static str, reason: impl Into<String>) -> SignatureError {
    SignatureError::Malformed {
        expected,
        reason: reason.into(),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    text: &[u8],
    expected: &'static str,
) -> Result<T, SignatureError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(malformed(expected, format!("over {MAX_FILE_BYTES} bytes")));
    }
    serde_json::from_slice(text).map_err(|e| malformed(expected, e.to_string()))
}

fn bytes32(field: &str, text: &str, expected: &'static str) -> Result<[u8; 32], SignatureError> {
    B64.decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| malformed(expected, format!("{field} is not 32 bytes of base64")))
}

impl SecretKeyFile {
    /// Parse and check a `NAME.key` file.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn parse(text: &[u8]) -> Result<(Self, SigningKey), SignatureError> {
        let f: Self = parse_json(text, "secret key (culvert-key-v1)")?;
        if f.format != KEY_FORMAT || f.algorithm != ALGORITHM {
            return Err(malformed(
                "secret key (culvert-key-v1)",
                format!("format {:?} / algorithm {:?}", f.format, f.algorithm),
            ));
        }
        let key = SigningKey::from_bytes(&bytes32(
            "secret_key",
            &f.secret_key,
            "secret key (culvert-key-v1)",
        )?);
        Ok((f, key))
    }
}

impl PublicKeyFile {
    /// Parse and check a `NAME.pub` file: its key id must be its key's.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn parse(text: &[u8]) -> Result<Self, SignatureError> {
        let f: Self = parse_json(text, "public key (culvert-key-v1)")?;
        f.check()?;
        Ok(f)
    }

    /// Check a public key that arrived as a value (in an API request):
    /// its format, its key, and that its key id is its key's.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn check(&self) -> Result<(), SignatureError> {
        const WHAT: &str = "public key (culvert-key-v1)";
        if self.format != KEY_FORMAT || self.algorithm != ALGORITHM {
            return Err(malformed(
                WHAT,
                format!("format {:?} / algorithm {:?}", self.format, self.algorithm),
            ));
        }
        let bytes = bytes32("public_key", &self.public_key, WHAT)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| malformed(WHAT, "not an Ed25519 point"))?;
        if key_id(&bytes) != self.key_id {
            return Err(malformed(WHAT, "its key_id is not its key's"));
        }
        Ok(())
    }

    /// The key.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`] (checked by [`parse`](Self::parse)).
    pub fn key(&self) -> Result<VerifyingKey, SignatureError> {
        const WHAT: &str = "public key (culvert-key-v1)";
        VerifyingKey::from_bytes(&bytes32("public_key", &self.public_key, WHAT)?)
            .map_err(|_| malformed(WHAT, "not an Ed25519 point"))
    }
}

/// `FILE.sig`: a detached signature of one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The signer's key id.
    pub key_id: String,
    /// The component's blake3 content hash, 64 hex characters.
    pub content_hash: String,
    /// The package name its `describe` returns.
    pub package: String,
    /// The package version its `describe` returns.
    pub version: String,
    /// When it was signed, in ms since the Unix epoch.
    pub signed_at: i64,
    /// The Ed25519 signature of [`message`](Self::message), base64.
    pub signature: String,
}

impl SignatureFile {
    /// The bytes signed: one line per field, after the format, so that no
    /// field can run into another and no other message can collide.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{SIGNATURE_FORMAT}\ncontent_hash={}\npackage={}\nversion={}\nsigned_at={}\nkey_id={}\n",
            self.content_hash, self.package, self.version, self.signed_at, self.key_id
        )
        .into_bytes()
    }

    /// Sign the package whose bytes hash to `content_hash` (hex) and whose
    /// `describe` returns `package`@`version`.
    pub fn sign(
        key: &SigningKey,
        content_hash: &str,
        package: &str,
        version: &str,
        signed_at: i64,
    ) -> Self {
        let mut f = Self {
            format: SIGNATURE_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: key_id(&key.verifying_key().to_bytes()),
            content_hash: content_hash.to_string(),
            package: package.to_string(),
            version: version.to_string(),
            signed_at,
            signature: String::new(),
        };
        f.signature = B64.encode(key.sign(&f.message()).to_bytes());
        f
    }

    /// Parse a `FILE.sig` (its fields' shapes only; [`verify`] checks it).
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn parse(text: &[u8]) -> Result<Self, SignatureError> {
        const WHAT: &str = "signature (culvert-signature-v1)";
        let f: Self = parse_json(text, WHAT)?;
        if f.format != SIGNATURE_FORMAT || f.algorithm != ALGORITHM {
            return Err(malformed(
                WHAT,
                format!("format {:?} / algorithm {:?}", f.format, f.algorithm),
            ));
        }
        // Printable on one line: no control, bidi or line-separator
        // characters, which could rearrange an error message.
        let invisible = |c: char| {
            c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        };
        let line_safe = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(invisible);
        // Lower case, as the host writes hashes and key ids.
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let well_formed = hex(&f.key_id, 16)
            && hex(&f.content_hash, 64)
            && line_safe(&f.package)
            && line_safe(&f.version);
        if !well_formed {
            return Err(malformed(
                WHAT,
                "key_id (16 lower-case hex), content_hash (64 lower-case hex), package and version (1 to 256 printable characters)",
            ));
        }
        Ok(f)
    }

    /// `package@version`.
    pub fn names(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }
}

/// Check `sig` against the package's content hash (hex) and the signer's
/// `public` key: the hash, then the key, then the signature. The name and
/// version are checked once `describe` has run ([`check_names`]).
///
/// # Errors
/// [`SignatureError::HashMismatch`], [`SignatureError::WrongKey`],
/// [`SignatureError::BadSignature`].
pub fn verify(
    sig: &SignatureFile,
    content_hash: &str,
    public: &PublicKeyFile,
) -> Result<(), SignatureError> {
    if sig.content_hash != content_hash {
        return Err(SignatureError::HashMismatch {
            key_id: sig.key_id.clone(),
            signed: sig.content_hash.clone(),
            actual: content_hash.to_string(),
        });
    }
    if sig.key_id != public.key_id {
        return Err(SignatureError::WrongKey {
            named: sig.key_id.clone(),
            given: public.key_id.clone(),
        });
    }
    let bad = || SignatureError::BadSignature {
        key_id: sig.key_id.clone(),
    };
    let bytes = B64.decode(&sig.signature).map_err(|_| bad())?;
    let signature = ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| bad())?;
    public
        .key()?
        .verify_strict(&sig.message(), &signature)
        .map_err(|_| bad())?;
    Ok(())
}

/// After `describe`: the package must be the name and version signed.
///
/// # Errors
/// [`SignatureError::Replayed`].
pub fn check_names(
    sig: &SignatureFile,
    package: &str,
    version: &str,
) -> Result<(), SignatureError> {
    if sig.package != package || sig.version != version {
        return Err(SignatureError::Replayed {
            key_id: sig.key_id.clone(),
            signed: sig.names(),
            actual: format!("{package}@{version}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const OTHER: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    fn pair() -> (SigningKey, PublicKeyFile) {
        let (secret, public) = generate().unwrap();
        let text = serde_json::to_vec(&secret).unwrap();
        let (_, key) = SecretKeyFile::parse(&text).unwrap();
        let public = PublicKeyFile::parse(&serde_json::to_vec(&public).unwrap()).unwrap();
        (key, public)
    }

    #[test]
    fn a_signature_verifies_and_round_trips_through_its_file() {
        let (key, public) = pair();
        let sig = SignatureFile::sign(&key, HASH, "etl", "1.0.0", 1_800_000_000_000);
        let text = serde_json::to_vec_pretty(&sig).unwrap();
        let parsed = SignatureFile::parse(&text).unwrap();
        assert_eq!(parsed, sig);
        verify(&parsed, HASH, &public).unwrap();
        check_names(&parsed, "etl", "1.0.0").unwrap();
        assert_eq!(sig.key_id, public.key_id);
        assert_eq!(sig.key_id.len(), 16);
    }

    #[test]
    fn every_tampering_is_refused_with_its_kind() {
        let (key, public) = pair();
        let sig = SignatureFile::sign(&key, HASH, "etl", "1.0.0", 1);
        // Other bytes.
        assert_eq!(
            verify(&sig, OTHER, &public).unwrap_err().kind(),
            "signature_hash_mismatch"
        );
        // A flipped bit in the signature.
        let mut raw = B64.decode(&sig.signature).unwrap();
        raw[7] ^= 1;
        let flipped = SignatureFile {
            signature: B64.encode(&raw),
            ..sig.clone()
        };
        assert_eq!(
            verify(&flipped, HASH, &public).unwrap_err().kind(),
            "bad_signature"
        );
        // A field changed after signing: the hash, the name, the time.
        for changed in [
            SignatureFile {
                content_hash: OTHER.into(),
                ..sig.clone()
            },
            SignatureFile {
                package: "other".into(),
                ..sig.clone()
            },
            SignatureFile {
                signed_at: 2,
                ..sig.clone()
            },
        ] {
            let hash = changed.content_hash.clone();
            assert_eq!(
                verify(&changed, &hash, &public).unwrap_err().kind(),
                "bad_signature"
            );
        }
        // Another key.
        let (_, stranger) = pair();
        assert_eq!(
            verify(&sig, HASH, &stranger).unwrap_err().kind(),
            "signature_wrong_key"
        );
        // Replayed onto another name or version.
        assert_eq!(
            check_names(&sig, "etl", "2.0.0").unwrap_err().kind(),
            "signature_replayed"
        );
        assert!(
            check_names(&sig, "elt", "1.0.0")
                .unwrap_err()
                .to_string()
                .contains("etl@1.0.0")
        );
    }

    #[test]
    fn malformed_files_are_refused() {
        for text in [
            &b"not json"[..],
            br#"{"format":"culvert-signature-v2","algorithm":"ed25519","key_id":"0000000000000000","content_hash":"00","package":"p","version":"1","signed_at":0,"signature":""}"#,
            br#"{"format":"culvert-signature-v1","algorithm":"ed25519","key_id":"0000000000000000","content_hash":"00","package":"p","version":"1","signed_at":0,"signature":""}"#,
        ] {
            assert_eq!(SignatureFile::parse(text).unwrap_err().kind(), "malformed_signature");
        }
        let (_, public) = pair();
        let lying = PublicKeyFile {
            key_id: "0123456789abcdef".into(),
            ..public
        };
        assert!(PublicKeyFile::parse(&serde_json::to_vec(&lying).unwrap()).is_err());
        assert!(SignatureFile::parse(&vec![b' '; MAX_FILE_BYTES + 1]).is_err());
        // Upper-case hex, and names that could rearrange a message.
        let (key, _) = pair();
        let good = SignatureFile::sign(&key, HASH, "etl", "1.0.0", 1);
        let upper = SignatureFile {
            content_hash: HASH.to_uppercase(),
            ..good.clone()
        };
        for bad in [
            upper,
            SignatureFile {
                package: "etl\u{202e}lte".into(),
                ..good.clone()
            },
            SignatureFile {
                version: "1.0.0\u{2028}forged".into(),
                ..good.clone()
            },
        ] {
            let text = serde_json::to_vec(&bad).unwrap();
            assert_eq!(
                SignatureFile::parse(&text).unwrap_err().kind(),
                "malformed_signature"
            );
        }
        assert!(SignatureFile::parse(&serde_json::to_vec(&good).unwrap()).is_ok());
    }
}
