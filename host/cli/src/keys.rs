//! `culvert key generate` and `culvert package sign`: Ed25519 key pairs and
//! detached package signatures (`FILE.sig`), made where the package is
//! built (a CI job), with no database.

use crate::common::{local_loader, read_package};
use anyhow::Context as _;
use culvert::{SecretKeyFile, SignatureFile};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `NAME` + `.ext`, keeping any directory and dots of NAME.
fn with_ext(name: &Path, ext: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// A key or signature file: a regular file, at most
/// [`culvert::MAX_SIGNATURE_FILE_BYTES`].
pub(crate) fn read_small(path: &Path) -> anyhow::Result<Vec<u8>> {
    let (handle, _) =
        culvert::open_regular(path, culvert::Links::Follow).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut text = Vec::new();
    let max = culvert::MAX_SIGNATURE_FILE_BYTES as u64;
    let n = culvert::read_bounded(handle, max + 1, &mut text)?;
    anyhow::ensure!(n <= max, "it is over {max} bytes");
    Ok(text)
}

/// `culvert key generate --out NAME`: `NAME.key` (mode 0600) and
/// `NAME.pub`. Refuses to overwrite either.
pub(crate) fn key_generate(out: &Path, json: bool) -> anyhow::Result<i32> {
    let secret_path = with_ext(out, ".key");
    let public_path = with_ext(out, ".pub");
    for p in [&secret_path, &public_path] {
        anyhow::ensure!(
            !p.exists(),
            "{} exists: keys are never overwritten; choose another --out or move it away",
            p.display()
        );
    }
    let (secret, public) = culvert::generate_key().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&secret_path)
        .with_context(|| format!("cannot create {}", secret_path.display()))?;
    file.write_all(&serde_json::to_vec_pretty(&secret)?)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::write(
        &public_path,
        format!("{}\n", serde_json::to_string_pretty(&public)?),
    )
    .with_context(|| format!("cannot create {}", public_path.display()))?;
    if json {
        println!(
            "{}",
            json!({
                "key_id": public.key_id,
                "secret_key_file": secret_path,
                "public_key_file": public_path,
            })
        );
    } else {
        println!(
            "key {}: secret key in {} (mode 0600: keep it to the signer), public key in {} (give it to operators: culvert key trust)",
            public.key_id,
            secret_path.display(),
            public_path.display()
        );
    }
    Ok(0)
}

/// `culvert package sign FILE --key NAME.key`: `FILE.sig` over the
/// package's content hash and the name and version its `describe` returns
/// (so the package is loaded here, which compiles it once).
pub(crate) async fn package_sign(
    g: &crate::args::GlobalArgs,
    file: &Path,
    key: &Path,
    json: bool,
) -> anyhow::Result<i32> {
    let key_text =
        read_small(key).with_context(|| format!("cannot read the key {}", key.display()))?;
    let (secret, signing) = SecretKeyFile::parse(&key_text).with_context(|| {
        format!(
            "{} is not a secret key file (culvert key generate)",
            key.display()
        )
    })?;
    let bytes = read_package(file)?;
    let pkg = local_loader(g)?
        .load(&bytes)
        .await
        .with_context(|| format!("{} is not a valid package", file.display()))?;
    let signature = SignatureFile::sign(
        &signing,
        &pkg.content_hash.to_string(),
        &pkg.metadata.name,
        &pkg.metadata.version,
        culvert::now_ms(),
    );
    let sig_path = with_ext(file, ".sig");
    std::fs::write(
        &sig_path,
        format!("{}\n", serde_json::to_string_pretty(&signature)?),
    )
    .with_context(|| format!("cannot write {}", sig_path.display()))?;
    if json {
        println!(
            "{}",
            json!({"signature_file": sig_path, "signature": signature})
        );
    } else {
        println!(
            "signed {}@{} (content {}) with key {}: {}",
            signature.package,
            signature.version,
            &signature.content_hash[..16],
            secret.key_id,
            sig_path.display()
        );
    }
    Ok(0)
}
