//! The `culvert` binary: parse the arguments, set up logging and the async
//! runtime, and run one command.
//!
//! Every command prints plain text by default and one JSON document with
//! `--json`. Errors are one line on stderr and a non-zero exit code. One
//! module per command group; `args` holds the clap types, `render` and
//! `table` the shared text and JSON forms, `common` what opens the
//! database, the engine and package files. With `--server`, `client`
//! talks to a server's API and `remote` runs the commands that work
//! through it.

mod apikey;
mod args;
mod bench;
mod bench_egress;
mod bench_http;
mod bench_languages;
mod bench_schedules;
mod build;
mod client;
mod common;
mod demo;
mod executions;
mod keys;
mod logs;
mod new;
mod package;
mod remote;
mod render;
mod run;
mod schedule;
mod serve;
mod table;
mod tenant;

use crate::apikey::*;
use crate::args::*;
use crate::bench::bench;
use crate::demo::*;
use crate::executions::*;
use crate::logs::{executions_logs, prune};
use crate::new::new_package;
use crate::package::*;
use crate::run::*;
use crate::serve::*;
use crate::tenant::*;
use clap::Parser;
use std::io::IsTerminal;

/// The exit code of a command whose workflow failed or was cancelled.
pub const EXIT_WORKFLOW_FAILED: i32 = 3;

fn main() {
    quiet_on_closed_pipes();
    std::process::exit(real_main());
}

/// A reader that stops early (`culvert status | head -2`) closes the pipe
/// under `println!`, which then panics. Exit quietly instead, as the Unix
/// tools do: 0 when stdout went away (the reader had what it wanted), 1
/// when stderr did (nothing can be reported any more).
fn quiet_on_closed_pipes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            if message.starts_with("failed printing to stdout") {
                std::process::exit(0);
            }
            if message.starts_with("failed printing to stderr") {
                std::process::exit(1);
            }
        }
        default(info);
    }));
}

/// Parse the arguments and run the command. Returns the process exit code:
/// 0 on success, 1 on an error (printed as one line on stderr), 2 on a
/// usage error, and 3 when a workflow run by the command did not complete
/// (it failed or was cancelled).
fn real_main() -> i32 {
    let cli = Cli::parse();
    init_tracing(&cli.global.log, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

/// An error and its causes on one line. Errors can quote a guest (a panic
/// in `describe`, say): any control character left after joining the lines
/// is escaped (see [`crate::guest_text`]).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    culvert::escape_guest_text(&format!("{e:#}").replace('\n', " ")).into_owned()
}

pub(crate) fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log file or pipe gets plain lines, in
    // which any escape byte would have come from a guest (and is escaped).
    // A log line that cannot be written (stderr closed) is dropped, not
    // reported on stderr again: that report panicked the worker thread that
    // logged, which could stop an in-process executor mid-execution.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The commands that work on the database only: `--server` is refused
/// for them, with what to do instead.
fn database_only(command: &Command) -> Option<String> {
    let (name, operator) = match command {
        Command::Serve(_) => ("serve", false),
        Command::Demo(_) => ("demo", false),
        Command::Bench(_) => ("bench", false),
        Command::Tenant(_) => ("tenant", true),
        Command::Grant(_) => ("grant", true),
        Command::Revoke(_) => ("revoke", true),
        Command::Apikey(_) => ("apikey", true),
        Command::Audit(_) => ("audit", true),
        Command::Prune(_) => ("prune", false),
        _ => return None,
    };
    Some(if operator {
        format!(
            "`culvert {name}` works on the database, not through --server: run it where \
             CULVERT_DATABASE_URL is set (through the API, use the operator routes: see docs/API.md)"
        )
    } else {
        format!(
            "`culvert {name}` works on the database, not through --server: run it where \
             CULVERT_DATABASE_URL is set, without --server (or CULVERT_SERVER)"
        )
    })
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    let api = client::Api::from_global(g)?;
    if api.is_some()
        && let Some(message) = database_only(&cli.command)
    {
        anyhow::bail!("{message}");
    }
    if let Some(api) = &api {
        match cli.command {
            Command::Package(PackageCommand::Add {
                file,
                tenant,
                signature,
                json,
            }) => {
                let signature = keys::signature_for(&file, signature.as_deref())?;
                return remote::package_add(api, &file, tenant.as_deref(), signature, json).await;
            }
            Command::Package(PackageCommand::Show {
                package,
                tenant,
                json,
            }) => return remote::package_show(api, &package, tenant.as_deref(), json).await,
            Command::Key(
                cmd @ (KeyCommand::Trust { .. }
                | KeyCommand::List { .. }
                | KeyCommand::Untrust { .. }),
            ) => {
                return keys::key_command(g, Some(api), cmd).await;
            }
            Command::Package(PackageCommand::List {
                tenant,
                all_tenants: _,
                json,
            }) => return remote::package_list(api, tenant.as_deref(), json).await,
            Command::Package(PackageCommand::Remove {
                package,
                tenant,
                json,
            }) => return remote::package_remove(api, &package, tenant.as_deref(), json).await,
            Command::Status { json } => return remote::status(api, json).await,
            Command::Run(args) => return remote::run_workflow(api, args).await,
            Command::Executions(ExecutionsCommand::List {
                tenant,
                all_tenants: _,
                status,
                schedule,
                limit,
                json,
            }) => {
                return remote::executions_list(
                    api,
                    tenant.as_deref(),
                    status.as_deref(),
                    schedule,
                    limit,
                    json,
                )
                .await;
            }
            Command::Schedule(cmd) => return schedule::schedule(g, Some(api), cmd).await,
            Command::Executions(ExecutionsCommand::Show { id, tenant, json }) => {
                return remote::executions_show(api, id, tenant.as_deref(), json).await;
            }
            Command::Executions(ExecutionsCommand::Retry(args)) => {
                return remote::retry_execution(api, args).await;
            }
            Command::Executions(ExecutionsCommand::Logs(args)) => {
                return logs::print_logs(&logs::LogSource::Api(api), &args).await;
            }
            Command::Cancel { id, tenant, json } => {
                return remote::cancel(api, id, tenant.as_deref(), json).await;
            }
            // The rest use no database: they run here either way.
            _ => {}
        }
    }
    match cli.command {
        Command::Package(PackageCommand::Inspect { file, json, format }) => {
            let format = if json { Format::Json } else { format };
            inspect(g, &file, format).await
        }
        Command::Package(PackageCommand::Add {
            file,
            tenant,
            signature,
            json,
        }) => {
            let signature = keys::signature_for(&file, signature.as_deref())?;
            package_add(g, &file, tenant_or_default(&tenant), signature, json).await
        }
        Command::Package(PackageCommand::Show {
            package,
            tenant,
            json,
        }) => package_show(g, &package, tenant_or_default(&tenant), json).await,
        Command::Package(PackageCommand::Build {
            dir,
            out,
            wit,
            json,
        }) => {
            let format = if json { Format::Json } else { Format::Text };
            build::package_build(g, &dir, out.as_deref(), wit.as_deref(), format).await
        }
        Command::Package(PackageCommand::Sign { file, key, json }) => {
            keys::package_sign(g, &file, &key, json).await
        }
        Command::Key(KeyCommand::Generate { out, json }) => keys::key_generate(&out, json),
        Command::Key(cmd) => keys::key_command(g, None, cmd).await,
        Command::Package(PackageCommand::List {
            tenant,
            all_tenants,
            json,
        }) => {
            let tenant = (!all_tenants).then(|| tenant_or_default(&tenant));
            package_list(g, tenant, json).await
        }
        Command::Package(PackageCommand::Remove {
            package,
            tenant,
            json,
        }) => package_remove(g, &package, tenant_or_default(&tenant), json).await,
        Command::Serve(args) => serve(g, args).await,
        Command::Status { json } => status(g, json).await,
        Command::Run(args) => run_workflow(g, args).await,
        Command::Exec(args) => exec(g, args).await,
        Command::Executions(ExecutionsCommand::List {
            tenant,
            all_tenants,
            status,
            schedule,
            limit,
            json,
        }) => {
            let tenant = (!all_tenants).then(|| tenant_or_default(&tenant));
            executions_list(g, tenant, status.as_deref(), schedule, limit, json).await
        }
        Command::Schedule(cmd) => schedule::schedule(g, None, cmd).await,
        Command::Executions(ExecutionsCommand::Show { id, tenant, json }) => {
            executions_show(g, id, tenant_or_default(&tenant), json).await
        }
        Command::Executions(ExecutionsCommand::Retry(args)) => retry_execution(g, args).await,
        Command::Executions(ExecutionsCommand::Logs(args)) => executions_logs(g, args).await,
        Command::Prune(args) => prune(g, args).await,
        Command::Cancel { id, tenant, json } => {
            cancel(g, id, tenant_or_default(&tenant), json).await
        }
        Command::Demo(args) => demo(g, args).await,
        Command::Tenant(cmd) => tenant(g, cmd).await,
        Command::Grant(args) => grant(g, args).await,
        Command::Revoke(args) => revoke(g, args).await,
        Command::Bench(args) => bench(g, args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "culvert", &mut script);
            // A reader that stops early (`| head`) is not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(0),
            }
        }
        Command::New(args) => new_package(args),
        Command::Apikey(cmd) => apikey(g, cmd).await,
        Command::Audit(args) => audit(g, args).await,
    }
}
