//! Package signing against real components and real databases: every way
//! a signature can fail is refused with its typed kind before anything is
//! compiled; a valid signature by a trusted key is accepted and stored; an
//! untrusted key's packages are kept or disabled as the tenant says.

use culvert::{
    ContentHash, Error, OnUntrust, PublicKeyFile, Runner, RunnerConfig, SecretKeyFile,
    SignatureFile, TenantLimits,
};
use culvert_tests::{Db, TestDb, artifacts, read};
use std::path::Path;
use std::time::Duration;

culvert_tests::both_backends!(
    every_bad_signature_is_refused_before_any_compile,
    a_valid_signature_by_a_trusted_key_is_accepted_and_stored,
    a_revoked_key_keeps_its_packages_when_on_untrust_is_keep,
    a_revoked_key_disables_its_packages_when_on_untrust_is_disable,
);

fn config(db: &TestDb) -> RunnerConfig {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 16;
    c.executor.poll_interval = Duration::from_millis(20);
    c
}

async fn runner(db: &TestDb) -> Runner {
    Runner::open(config(db)).await.expect("open runner")
}

fn hash(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_hex()
}

/// A signature of `content_hash` as `package`@`version` by `secret`, as
/// the bytes of its `.sig` file.
fn sign(secret: &SecretKeyFile, content_hash: &str, package: &str, version: &str) -> Vec<u8> {
    let (_, key) = SecretKeyFile::parse(&serde_json::to_vec(secret).unwrap()).unwrap();
    let sig = SignatureFile::sign(&key, content_hash, package, version, culvert::now_ms());
    serde_json::to_vec_pretty(&sig).unwrap()
}

/// Files under `dir`, recursively: the compiled cache's artifacts.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A tenant that requires signatures, with `on_untrust`.
async fn strict_tenant(r: &Runner, name: &str, on_untrust: OnUntrust) {
    let mut limits = TenantLimits::default();
    limits.set("require_signature", "true").unwrap();
    limits.on_untrust = on_untrust;
    r.create_tenant(name, &limits).await.unwrap();
}

/// The typed refusal of a registration.
async fn refused(r: &Runner, tenant: &str, bytes: &[u8], sig: Option<&[u8]>) -> (String, String) {
    match r.register_signed_package(tenant, bytes, sig).await {
        Err(Error::Signature(e)) => (e.kind().to_string(), e.to_string()),
        other => panic!("expected a signature refusal, got {other:?}"),
    }
}

async fn every_bad_signature_is_refused_before_any_compile(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    strict_tenant(&r, "acme", OnUntrust::Keep).await;
    r.create_tenant("other", &TenantLimits::default())
        .await
        .unwrap();
    let hello = read(artifacts::HELLO);
    let etl = read(artifacts::ETL);
    let h = hash(&hello);
    let (secret, public) = culvert::generate_key().unwrap();
    r.trust_key("acme", "ci", &public, "test").await.unwrap();
    let good = sign(&secret, &h, "hello", "0.1.0");
    let cache = db.dir().join("cache");

    // No signature.
    let (kind, message) = refused(&r, "acme", &hello, None).await;
    assert_eq!(kind, "signature_missing");
    assert!(
        message.contains("acme") && message.contains("culvert package sign"),
        "{message}"
    );

    // A flipped bit in the package: its hash is not the one signed.
    let mut flipped = hello.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let (kind, message) = refused(&r, "acme", &flipped, Some(&good)).await;
    assert_eq!(kind, "signature_hash_mismatch");
    assert!(message.contains(&public.key_id), "names the key: {message}");

    // A flipped bit in the signature itself.
    let mut sig: SignatureFile = serde_json::from_slice(&good).unwrap();
    let mut raw = sig.signature.clone().into_bytes();
    raw[0] = if raw[0] == b'A' { b'B' } else { b'A' };
    sig.signature = String::from_utf8(raw).unwrap();
    let (kind, message) =
        refused(&r, "acme", &hello, Some(&serde_json::to_vec(&sig).unwrap())).await;
    assert_eq!(kind, "bad_signature");
    assert!(message.contains(&public.key_id), "{message}");
    // ... or in a signed field (the signing time).
    let mut sig: SignatureFile = serde_json::from_slice(&good).unwrap();
    sig.signed_at ^= 1;
    let (kind, _) = refused(&r, "acme", &hello, Some(&serde_json::to_vec(&sig).unwrap())).await;
    assert_eq!(kind, "bad_signature");

    // A valid signature over another package's hash.
    let for_etl = sign(&secret, &hash(&etl), "etl", "0.1.0");
    let (kind, _) = refused(&r, "acme", &hello, Some(&for_etl)).await;
    assert_eq!(kind, "signature_hash_mismatch");

    // An untrusted key.
    let (stranger, stranger_pub) = culvert::generate_key().unwrap();
    let (kind, message) = refused(
        &r,
        "acme",
        &hello,
        Some(&sign(&stranger, &h, "hello", "0.1.0")),
    )
    .await;
    assert_eq!(kind, "signature_untrusted_key");
    assert!(message.contains(&stranger_pub.key_id), "{message}");

    // A key trusted for another tenant only.
    r.trust_key("other", "theirs", &stranger_pub, "test")
        .await
        .unwrap();
    let (kind, _) = refused(
        &r,
        "acme",
        &hello,
        Some(&sign(&stranger, &h, "hello", "0.1.0")),
    )
    .await;
    assert_eq!(kind, "signature_untrusted_key");

    // Garbage where the signature file should be.
    let (kind, _) = refused(&r, "acme", &hello, Some(b"{\"format\": 1}")).await;
    assert_eq!(kind, "malformed_signature");

    // None of it compiled anything, or stored anything.
    assert_eq!(files_under(&cache), 0, "a refusal compiles nothing");
    assert!(r.list_packages(Some("acme")).await.unwrap().is_empty());

    // Replayed onto another name or version: these very bytes, signed by a
    // trusted key as something they are not. Only `describe` says what they
    // are, so this one is refused after the compile.
    for (name, version) in [("etl", "0.1.0"), ("hello", "9.9.9")] {
        let replayed = sign(&secret, &h, name, version);
        let (kind, message) = refused(&r, "acme", &hello, Some(&replayed)).await;
        assert_eq!(kind, "signature_replayed", "{name}@{version}");
        assert!(message.contains(&format!("{name}@{version}")), "{message}");
    }

    assert!(r.list_packages(Some("acme")).await.unwrap().is_empty());

    // A signature offered where none is required is checked all the same.
    let (kind, _) = refused(&r, "public", &flipped, Some(&good)).await;
    assert_eq!(kind, "signature_untrusted_key", "public trusts no key");

    // And the good one passes (and only then compiles).
    r.register_signed_package("acme", &hello, Some(&good))
        .await
        .unwrap();
    assert!(files_under(&cache) > 0, "the accepted package was compiled");
}

async fn a_valid_signature_by_a_trusted_key_is_accepted_and_stored(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    strict_tenant(&r, "acme", OnUntrust::Keep).await;
    let hello = read(artifacts::HELLO);
    let (secret, public) = culvert::generate_key().unwrap();
    let key = r.trust_key("acme", "ci", &public, "alice").await.unwrap();
    assert_eq!(key.key_id, public.key_id);
    assert!(key.is_trusted());
    assert_eq!(key.trusted_by, "alice");
    let sig_bytes = sign(&secret, &hash(&hello), "hello", "0.1.0");
    let sig: SignatureFile = serde_json::from_slice(&sig_bytes).unwrap();

    let added = r
        .register_signed_package("acme", &hello, Some(&sig_bytes))
        .await
        .unwrap();
    assert!(added.created);
    assert_eq!(
        added.signature_key_id.as_deref(),
        Some(public.key_id.as_str())
    );
    assert_eq!(added.signed_at, Some(sig.signed_at));

    // Stored with the package: with its hash, name and version, the whole
    // signature file again, which verifies.
    let rows = r.list_packages(Some("acme")).await.unwrap();
    let stored = rows[0].signature.as_ref().expect("stored");
    assert_eq!(stored.key_id, public.key_id);
    assert_eq!(stored.signed_at, sig.signed_at);
    assert_eq!(stored.signature, sig.signature);
    assert!(stored.key_untrusted_at.is_none() && !stored.disabled);
    let rebuilt = SignatureFile {
        content_hash: rows[0].content_hash.clone(),
        package: rows[0].name.clone(),
        version: rows[0].version.clone(),
        ..sig.clone()
    };
    culvert::verify_signature(&rebuilt, &rows[0].content_hash, &public).unwrap();

    // It loads and runs.
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_some());

    // Names are unique among trusted keys; a bad public key is refused.
    let (_, second) = culvert::generate_key().unwrap();
    let dup = r
        .trust_key("acme", "ci", &second, "alice")
        .await
        .unwrap_err();
    assert!(dup.to_string().contains("named 'ci'"), "{dup}");
    let forged = PublicKeyFile {
        key_id: second.key_id.clone(),
        ..public.clone()
    };
    let bad = r
        .trust_key("acme", "forged", &forged, "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, Error::Signature(e) if e.kind() == "malformed_signature"),
        "{bad:?}"
    );
    let listed = r.trusted_keys(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(r.trusted_keys(Some("public")).await.unwrap().is_empty());

    // A tenant holds at most 256 keys, untrusted ones included; trusting
    // one it holds again does not count twice.
    for i in 1..256 {
        let (_, public) = culvert::generate_key().unwrap();
        let name = format!("k{i}");
        r.trust_key("acme", &name, &public, "alice").await.unwrap();
        if i % 2 == 0 {
            r.untrust_key("acme", &name, "alice").await.unwrap();
        }
    }
    let (_, one_more) = culvert::generate_key().unwrap();
    let full = r
        .trust_key("acme", "one-more", &one_more, "alice")
        .await
        .unwrap_err();
    assert!(matches!(full, Error::Quota(_)), "{full:?}");
    r.trust_key("acme", "ci-renamed", &public, "alice")
        .await
        .unwrap();
    assert_eq!(r.trusted_keys(Some("acme")).await.unwrap().len(), 256);
}

/// Trust a key for `acme`, add hello signed by it, untrust the key.
async fn add_then_untrust(r: &Runner) -> (SecretKeyFile, PublicKeyFile) {
    let hello = read(artifacts::HELLO);
    let (secret, public) = culvert::generate_key().unwrap();
    r.trust_key("acme", "ci", &public, "test").await.unwrap();
    let sig = sign(&secret, &hash(&hello), "hello", "0.1.0");
    r.register_signed_package("acme", &hello, Some(&sig))
        .await
        .unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_some());
    let row = r.untrust_key("acme", "ci", "test").await.unwrap();
    assert_eq!(row.key_id, public.key_id);
    assert!(row.untrusted_at.is_some());
    assert_eq!(row.untrusted_by.as_deref(), Some("test"));

    // A revoked key signs nothing new.
    let flaky = read(artifacts::FLAKY);
    let sig = sign(&secret, &hash(&flaky), "flaky", "0.1.0");
    let (kind, message) = refused(r, "acme", &flaky, Some(&sig)).await;
    assert_eq!(kind, "signature_revoked_key");
    assert!(message.contains(&public.key_id), "{message}");
    // Nor can it be untrusted twice.
    let again = r.untrust_key("acme", "ci", "test").await.unwrap_err();
    assert!(again.is_not_found(), "{again:?}");
    (secret, public)
}

async fn a_revoked_key_keeps_its_packages_when_on_untrust_is_keep(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    strict_tenant(&r, "acme", OnUntrust::Keep).await;
    add_then_untrust(&r).await;
    r.reconciler().reconcile().await.unwrap();
    assert!(
        r.registry().package("acme", "hello", None).is_some(),
        "keep: it stays loaded"
    );
    let rows = r.list_packages(Some("acme")).await.unwrap();
    let s = rows[0].signature.as_ref().unwrap();
    assert!(s.key_untrusted_at.is_some(), "marked");
    assert!(!s.disabled);
    // And it runs.
    r.start();
    let started = r
        .start_execution("acme", "hello", None, serde_json::Map::new())
        .await
        .unwrap();
    let done = r
        .wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, culvert::ExecutionStatus::Completed);
    r.shutdown().await;
}

async fn a_revoked_key_disables_its_packages_when_on_untrust_is_disable(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    strict_tenant(&r, "acme", OnUntrust::Disable).await;
    // Before the key is untrusted: a schedule, and a finished execution.
    let hello_bytes = read(artifacts::HELLO);
    let (secret0, public0) = culvert::generate_key().unwrap();
    r.trust_key("acme", "early", &public0, "test")
        .await
        .unwrap();
    r.register_signed_package(
        "acme",
        &hello_bytes,
        Some(&sign(&secret0, &hash(&hello_bytes), "hello", "0.1.0")),
    )
    .await
    .unwrap();
    let schedule = r
        .create_schedule("acme", culvert::ScheduleSpec::new("hello", "0 0 3 1 1 *"))
        .await
        .unwrap();
    r.start();
    let started = r
        .start_execution("acme", "hello", None, serde_json::Map::new())
        .await
        .unwrap();
    let done = r
        .wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, culvert::ExecutionStatus::Completed);
    r.untrust_key("acme", "early", "test").await.unwrap();

    let (secret, public) = add_then_untrust(&r).await;
    r.reconciler().reconcile().await.unwrap();
    assert!(
        r.registry().package("acme", "hello", None).is_none(),
        "disable: unloaded at the next pass"
    );
    let rows = r.list_packages(Some("acme")).await.unwrap();
    let s = rows[0].signature.as_ref().unwrap();
    assert!(s.key_untrusted_at.is_some() && s.disabled);
    for version in [None, Some("0.1.0")] {
        let refused = r
            .start_execution("acme", "hello", version, serde_json::Map::new())
            .await
            .unwrap_err();
        assert!(refused.is_not_found(), "{refused:?}");
        let message = refused.to_string();
        assert!(
            message.contains("disabled") && message.contains(&public.key_id),
            "says why: {message}"
        );
    }
    // Nothing else starts it: a schedule's fire, a new schedule, a retry.
    let fired = r.trigger_schedule("acme", schedule.id).await.unwrap_err();
    assert!(fired.to_string().contains("disabled"), "{fired}");
    let created = r
        .create_schedule("acme", culvert::ScheduleSpec::new("hello", "0 0 3 1 1 *"))
        .await
        .unwrap_err();
    assert!(created.to_string().contains("disabled"), "{created}");
    let retried = r.retry_execution("acme", started.id).await.unwrap_err();
    assert!(retried.to_string().contains("disabled"), "{retried}");
    // A restart (a fresh runner on the same database) does not load it.
    let fresh = runner(&db).await;
    fresh.reconciler().reconcile().await.unwrap();
    assert!(fresh.registry().package("acme", "hello", None).is_none());

    // The same bytes again: unsigned, or signed by the revoked key, are
    // refused; signed by a newly trusted key, the stored signature is
    // replaced and the package loads again.
    let (kind, _) = refused(&r, "acme", &hello_bytes, None).await;
    assert_eq!(kind, "signature_missing");
    let by_revoked = sign(&secret, &hash(&hello_bytes), "hello", "0.1.0");
    let (kind, _) = refused(&r, "acme", &hello_bytes, Some(&by_revoked)).await;
    assert_eq!(kind, "signature_revoked_key");
    let (secret2, public2) = culvert::generate_key().unwrap();
    r.trust_key("acme", "ci-2", &public2, "test").await.unwrap();
    let again = r
        .register_signed_package(
            "acme",
            &hello_bytes,
            Some(&sign(&secret2, &hash(&hello_bytes), "hello", "0.1.0")),
        )
        .await
        .unwrap();
    assert!(!again.created);
    let rows = r.list_packages(Some("acme")).await.unwrap();
    let s = rows[0].signature.as_ref().unwrap();
    assert_eq!(s.key_id, public2.key_id);
    assert!(!s.disabled);
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_some());
    let (secret3, public3) = culvert::generate_key().unwrap();
    r.trust_key("acme", "ci-3", &public3, "test").await.unwrap();
    r.register_signed_package(
        "acme",
        &hello_bytes,
        Some(&sign(&secret3, &hash(&hello_bytes), "hello", "0.1.0")),
    )
    .await
    .unwrap();
    r.untrust_key("acme", "ci-3", "test").await.unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_none());

    // The policy switched to keep: it loads again.
    let mut limits = r.tenant("acme").await.unwrap().limits;
    limits.set("on_untrust", "keep").unwrap();
    r.update_tenant("acme", &limits).await.unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_some());
    // Back to disable, then the key trusted again: it loads again.
    limits.set("on_untrust", "disable").unwrap();
    r.update_tenant("acme", &limits).await.unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_none());
    let again = r
        .trust_key("acme", "ci-again", &public3, "test")
        .await
        .unwrap();
    assert!(again.is_trusted() && again.name == "ci-again");
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().package("acme", "hello", None).is_some());
    r.shutdown().await;
}
