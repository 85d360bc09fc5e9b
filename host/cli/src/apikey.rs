//! `culvert apikey create|list|revoke` and `culvert audit`: the HTTP API's
//! keys and its audit log, managed with the database URL.

use crate::args::*;
use crate::common::*;
use crate::table::print_table;
use culvert::{ApiKeyRole, AuditAction, AuditEntry, Escaped, generate_api_key, now_ms};
use culvert_server::views::fmt_ms;
use culvert_server::{audit_json, key_json};
use serde_json::{Value, json};

/// An audit entry for a change made from the command line (no key).
pub(crate) fn cli_entry(
    tenant: &str,
    action: AuditAction,
    subject: &str,
    detail: Value,
) -> AuditEntry {
    AuditEntry {
        key_id: None,
        key_name: Some("(command line)".into()),
        tenant: tenant.to_string(),
        action,
        subject: subject.to_string(),
        detail,
    }
}

pub(crate) async fn apikey(g: &GlobalArgs, cmd: ApikeyCommand) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    match cmd {
        ApikeyCommand::Create {
            tenant,
            name,
            role,
            expires,
            json: json_out,
        } => {
            culvert::validate_tenant(&tenant)?;
            if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                anyhow::bail!("a key's name must be 1 to 64 printable characters, without spaces");
            }
            let role = match role {
                KeyRole::Tenant => ApiKeyRole::Tenant,
                KeyRole::Operator => ApiKeyRole::Operator,
            };
            let key = generate_api_key().map_err(|e| anyhow::anyhow!(e))?;
            let now = now_ms();
            let row = culvert::ApiKeyRow {
                id: key.id.clone(),
                tenant: tenant.clone(),
                name,
                role,
                created_at: now,
                expires_at: expires.map(|d| now.saturating_add(d.as_millis() as i64)),
                revoked_at: None,
            };
            store.create_api_key(&row, &key.hash).await?;
            store
                .record_audit(&cli_entry(
                    &tenant,
                    AuditAction::KeyCreated,
                    &row.id,
                    json!({"name": row.name, "role": row.role, "expires_at": row.expires_at}),
                ))
                .await?;
            if json_out {
                let mut v = key_json(&row);
                v["secret"] = json!(key.secret);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "created {} key {} '{}' for tenant {}{}",
                    row.role,
                    row.id,
                    row.name,
                    row.tenant,
                    row.expires_at
                        .map(|e| format!(", expires {}", fmt_ms(e)))
                        .unwrap_or_default()
                );
                println!("secret (shown once; store it now):");
                println!("{}", key.secret);
            }
        }
        ApikeyCommand::List {
            tenant,
            json: json_out,
        } => {
            let rows = store.list_api_keys(tenant.as_deref()).await?;
            if json_out {
                let items: Vec<Value> = rows.iter().map(key_json).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(0);
            }
            if rows.is_empty() {
                println!("no API keys");
                return Ok(0);
            }
            let now = now_ms();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|k| {
                    let state = if k.revoked_at.is_some() {
                        "revoked".to_string()
                    } else if !k.is_live(now) {
                        "expired".to_string()
                    } else {
                        "live".to_string()
                    };
                    vec![
                        k.id.clone(),
                        k.tenant.clone(),
                        Escaped(&k.name).to_string(),
                        k.role.to_string(),
                        state,
                        fmt_ms(k.created_at),
                        k.expires_at.map(fmt_ms).unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID", "TENANT", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES",
                ],
                &table,
            );
        }
        ApikeyCommand::Revoke { id, json: json_out } => {
            let row = store.revoke_api_key(None, &id).await?;
            store
                .record_audit(&cli_entry(
                    &row.tenant,
                    AuditAction::KeyRevoked,
                    &row.id,
                    json!({"name": row.name}),
                ))
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&key_json(&row))?);
            } else {
                println!(
                    "revoked key {} '{}' of tenant {}",
                    row.id,
                    Escaped(&row.name),
                    row.tenant
                );
            }
        }
    }
    Ok(0)
}

pub(crate) async fn audit(g: &GlobalArgs, args: AuditArgs) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let rows = store
        .audit_log(args.tenant.as_deref(), None, args.limit)
        .await?;
    if args.json {
        let items: Vec<Value> = rows.iter().map(audit_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no audit entries");
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            vec![
                fmt_ms(a.at),
                a.tenant.clone(),
                a.action.clone(),
                Escaped(&a.subject).to_string(),
                match (&a.key_id, &a.key_name) {
                    (Some(id), Some(name)) => format!("{id} ({})", Escaped(name)),
                    (None, Some(name)) => Escaped(name).to_string(),
                    _ => "-".into(),
                },
                Escaped(&a.detail.to_string()).to_string(),
            ]
        })
        .collect();
    print_table(
        &["AT", "TENANT", "ACTION", "SUBJECT", "BY", "DETAIL"],
        &table,
    );
    Ok(0)
}
