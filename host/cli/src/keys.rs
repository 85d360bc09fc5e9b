//! `culvert key generate` and `culvert package sign`: Ed25519 key pairs and
//! detached package signatures (`FILE.sig`), made where the package is
//! built (a CI job), with no database. And `culvert key trust|list|untrust`:
//! the keys each tenant trusts, on the database or through `--server`.

use crate::apikey::cli_entry;
use crate::args::{GlobalArgs, KeyCommand, tenant_or_default};
use crate::client::{Api, Body, Retry};
use crate::common::{local_loader, open_runner, read_package, runner_config};
use crate::remote::tenant_query;
use crate::table::print_table;
use anyhow::Context as _;
use culvert::{AuditAction, PublicKeyFile, SecretKeyFile, SignatureFile};
use culvert_server::views::trusted_key_json;
use reqwest::Method;
use serde_json::{Value, json};
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

/// The signature `package add FILE` sends: `--signature PATH`, else
/// `FILE.sig` when it exists, else none.
pub(crate) fn signature_for(
    file: &Path,
    explicit: Option<&Path>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let beside = with_ext(file, ".sig");
            if !beside.exists() {
                return Ok(None);
            }
            beside
        }
    };
    read_small(&path)
        .map(Some)
        .with_context(|| format!("cannot read the signature {}", path.display()))
}

/// Who made a change from the command line, as a trusted key records it.
const COMMAND_LINE: &str = "(command line)";

/// `culvert key trust|list|untrust`, on the database or through `api`.
pub(crate) async fn key_command(
    g: &GlobalArgs,
    api: Option<&Api>,
    cmd: KeyCommand,
) -> anyhow::Result<i32> {
    match cmd {
        KeyCommand::Generate { out, json } => key_generate(&out, json),
        KeyCommand::Trust {
            tenant,
            name,
            file,
            json,
        } => {
            let text = read_small(&file)
                .with_context(|| format!("cannot read the public key {}", file.display()))?;
            let public = PublicKeyFile::parse(&text).with_context(|| {
                format!(
                    "{} is not a public key file (NAME.pub from culvert key generate)",
                    file.display()
                )
            })?;
            let v = match api {
                Some(api) => {
                    let q = tenant_query(tenant.as_deref());
                    api.call(
                        Method::POST,
                        &["signing-keys"],
                        &q,
                        Body::Json(json!({"name": name, "public_key": public})),
                        &[],
                        Retry::Never,
                    )
                    .await?
                }
                None => {
                    let tenant = tenant_or_default(&tenant);
                    let runner = open_runner(runner_config(g)?).await?;
                    let key = runner
                        .trust_key(tenant, &name, &public, COMMAND_LINE)
                        .await?;
                    audited(&runner, AuditAction::SigningKeyTrusted, &key).await?
                }
            };
            print_key(&v, "trusted", json)
        }
        KeyCommand::Untrust { tenant, key, json } => {
            let v = match api {
                Some(api) => {
                    let q = tenant_query(tenant.as_deref());
                    api.call(
                        Method::DELETE,
                        &["signing-keys", &key],
                        &q,
                        Body::Empty,
                        &[],
                        Retry::Never,
                    )
                    .await?
                }
                None => {
                    let tenant = tenant_or_default(&tenant);
                    let runner = open_runner(runner_config(g)?).await?;
                    let row = runner.untrust_key(tenant, &key, COMMAND_LINE).await?;
                    audited(&runner, AuditAction::SigningKeyUntrusted, &row).await?
                }
            };
            print_key(&v, "untrusted", json)
        }
        KeyCommand::List {
            tenant,
            all_tenants,
            json,
        } => {
            let items: Vec<Value> = match api {
                Some(api) => {
                    let q = tenant_query(tenant.as_deref());
                    match api.get(&["signing-keys"], &q).await? {
                        Value::Array(items) => items,
                        other => {
                            anyhow::bail!("the server answered {other} where a list was expected")
                        }
                    }
                }
                None => {
                    let store = crate::common::open_store(g).await?;
                    let tenant = (!all_tenants).then(|| tenant_or_default(&tenant));
                    store
                        .trusted_keys(tenant)
                        .await?
                        .iter()
                        .map(trusted_key_json)
                        .collect()
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(0);
            }
            if items.is_empty() {
                println!("no signing keys trusted");
                return Ok(0);
            }
            let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|k| {
                    vec![
                        text(&k["tenant"]),
                        text(&k["name"]),
                        text(&k["key_id"]),
                        text(&k["status"]),
                        text(&k["trusted_at"]),
                        text(&k["trusted_by"]),
                        text(&k["untrusted_at"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TENANT",
                    "NAME",
                    "KEY ID",
                    "STATUS",
                    "TRUSTED AT",
                    "TRUSTED BY",
                    "UNTRUSTED AT",
                ],
                &rows,
            );
            Ok(0)
        }
    }
}

/// Record a change to `key` in the audit log: its JSON form.
async fn audited(
    runner: &culvert::Runner,
    action: AuditAction,
    key: &culvert::TrustedKey,
) -> anyhow::Result<Value> {
    runner
        .store()
        .record_audit(&cli_entry(
            &key.tenant,
            action,
            &key.key_id,
            json!({"name": key.name}),
        ))
        .await?;
    Ok(trusted_key_json(key))
}

/// Print one key in its JSON form ([`trusted_key_json`]), or a line.
fn print_key(v: &Value, did: &str, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        println!(
            "{did} key {} ({}) for tenant {}",
            text("key_id"),
            text("name"),
            text("tenant")
        );
    }
    Ok(0)
}
