//! Procedural macros behind `culvert-sdk`. Use them through that crate:
//! `#[culvert_sdk::workflow]`, `#[task]` inside it, and
//! `culvert_sdk::export_package!`.
//!
//! The `workflow` attribute reads a module's `#[task]` functions, checks the
//! DAG they form (ids, dependencies, cycles, retry policies, trigger rules)
//! and reports every problem as a compile error at the offending span. It
//! then adds to the module the workflow's spec and a dispatcher from task id
//! to function (hidden), and a `Workflow` type that implements
//! `culvert_sdk::WorkflowDefinition` over them: `export_package!` exports
//! it, and `culvert_sdk::testing` runs it natively.
//!
//! A `#[workflow]` module also asserts that its `Workflow` implements the
//! SDK's hidden `Exported` trait, which only `export_package!` implements:
//! a package that forgets `export_package!` fails to build, with a message
//! that says to add it, instead of building a component that exports
//! nothing.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Item, ItemMod, Lit, LitStr, Meta, Token};

mod dag;
mod schedule;
mod trigger;

use trigger::Trigger;

/// Marks a module as a workflow whose `#[task]` functions are its tasks.
///
/// Arguments: `name = "..."` (default: the module's name),
/// `description = "..."` (default: the module's doc comment), and any
/// number of `schedule(cron = "0 */5 * * * *", timezone = "Europe/Berlin",
/// context = "{...}", catch_up = "skip", catch_up_cap = 10, overlap =
/// "allow")` (only `cron` is required; an invalid cron expression or
/// timezone is a compile error). See the `culvert-sdk` crate docs for the
/// `#[task]` keys.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand_workflow(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// A task of a workflow. Only valid on a function inside a
/// `#[culvert_sdk::workflow]` module, which consumes it.
#[proc_macro_attribute]
pub fn task(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: TokenStream2 = item.into();
    let err = syn::Error::new(
        Span::call_site(),
        "#[task] is only valid on a function inside a #[culvert_sdk::workflow] module",
    )
    .to_compile_error();
    quote!(#err #item).into()
}

/// Exports workflows from the component: `export_package!(etl, billing)`.
///
/// Optional keys: `name`, `version`, `description` and `author` (defaults:
/// the crate's `Cargo.toml` values), and `capabilities(...)` with `env =
/// ["VAR"]`, `dirs = ["/data"]` (read-only) or `dirs_rw = ["/out"]`,
/// `http_hosts = ["api.example.com"]`, `wall_clock = true` and
/// `random = true`. Use it once per crate.
#[proc_macro]
pub fn export_package(input: TokenStream) -> TokenStream {
    match expand_export(input.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The host's ceiling on timeouts and retry delays: 24 hours, in ms.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Parsed `#[task(...)]`.
struct TaskDef {
    id: String,
    id_span: Span,
    func: syn::Ident,
    description: String,
    dependencies: Vec<(String, Span)>,
    retry: Option<RetryDef>,
    timeout_ms: Option<u64>,
    trigger: Option<Trigger>,
}

struct RetryDef {
    max_attempts: u32,
    backoff: TokenStream2,
    initial_delay_ms: u64,
    max_delay_ms: u64,
    jitter: bool,
    retry_on: TokenStream2,
}

fn expand_workflow(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    let mut module: ItemMod = syn::parse2(item)?;
    let mut name = module.ident.to_string();
    let mut name_span = module.ident.span();
    let mut description = doc_text(&module.attrs);
    let mut schedules = Vec::new();
    for arg in &args {
        match arg {
            Meta::NameValue(nv) if nv.path.is_ident("name") => {
                let lit = expect_str(&nv.value)?;
                name = lit.value();
                name_span = lit.span();
            }
            Meta::NameValue(nv) if nv.path.is_ident("description") => {
                description = expect_str(&nv.value)?.value();
            }
            Meta::List(list) if list.path.is_ident("schedule") => {
                schedules.push(schedule::parse(list)?);
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "unknown workflow argument: expected `name = \"...\"`, `description = \"...\"` or `schedule(cron = \"...\", ...)`",
                ));
            }
        }
    }
    check_identifier(&name, name_span, "workflow name")?;
    let schedule_specs: Vec<TokenStream2> = schedules.iter().map(|s| s.tokens(&name)).collect();

    let Some((_, items)) = module.content.as_mut() else {
        return Err(syn::Error::new(
            module.span(),
            "#[workflow] needs an inline module: `mod name { ... }`",
        ));
    };

    let mut tasks = Vec::new();
    // Ids of tasks whose #[task] was rejected: they exist, so depending on
    // them is not also reported as a dependency on an unknown task.
    let mut rejected = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for item in items.iter_mut() {
        let Item::Fn(func) = item else { continue };
        let Some(pos) = func.attrs.iter().position(is_task_attr) else {
            continue;
        };
        let attr = func.attrs.remove(pos);
        match parse_task(&attr, func) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                rejected.push(declared_id(&attr, func));
                push_error(&mut errors, e);
            }
        }
    }
    if tasks.is_empty() && errors.is_none() {
        push_error(
            &mut errors,
            syn::Error::new(
                module.ident.span(),
                format!("workflow '{name}' has no #[task] functions"),
            ),
        );
    }
    if let Err(e) = dag::check(&name, &tasks, &rejected) {
        push_error(&mut errors, e);
    }
    if let Some(e) = errors {
        return Err(e);
    }

    let exported_check = quote_spanned! {module.ident.span()=>
        const _: () = ::culvert_sdk::__private::assert_exported::<Workflow>();
    };
    let task_specs = tasks.iter().map(task_spec_tokens);
    let arms = tasks.iter().map(|t| {
        let id = &t.id;
        let func = &t.func;
        quote_spanned!(t.func.span()=> #id => ::core::option::Option::Some(#func(ctx)),)
    });
    let generated: Vec<Item> = vec![
        syn::parse_quote! {
            #[allow(unused_imports)]
            use ::culvert_sdk::prelude::*;
        },
        syn::parse_quote! {
            #[doc(hidden)]
            pub const __CULVERT_NAME: &str = #name;
        },
        syn::parse_quote! {
            #[doc(hidden)]
            pub fn __culvert_spec() -> ::culvert_sdk::__private::WorkflowSpec {
                use ::culvert_sdk::__private as __c;
                __c::WorkflowSpec {
                    name: ::std::string::String::from(#name),
                    description: ::std::string::String::from(#description),
                    tasks: ::std::vec![#(#task_specs),*],
                }
            }
        },
        syn::parse_quote! {
            #[doc(hidden)]
            pub fn __culvert_schedules() -> ::std::vec::Vec<::culvert_sdk::__private::ScheduleSpec> {
                use ::culvert_sdk::__private as __c;
                ::std::vec![#(#schedule_specs),*]
            }
        },
        syn::parse_quote! {
            #[doc(hidden)]
            pub fn __culvert_run(
                task: &str,
                ctx: &mut ::culvert_sdk::Context,
            ) -> ::core::option::Option<::core::result::Result<(), ::culvert_sdk::TaskError>> {
                match task {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }
        },
        syn::parse_quote! {
            /// This workflow as a type, generated by `#[culvert_sdk::workflow]`:
            /// name it in `culvert_sdk::export_package!` (by its module) and
            /// run it natively with `culvert_sdk::testing`.
            pub struct Workflow;
        },
        syn::parse_quote! {
            impl ::culvert_sdk::WorkflowDefinition for Workflow {
                const NAME: &'static str = #name;
                fn spec() -> ::culvert_sdk::__private::WorkflowSpec {
                    __culvert_spec()
                }
                fn run(
                    task: &str,
                    ctx: &mut ::culvert_sdk::Context,
                ) -> ::core::option::Option<::core::result::Result<(), ::culvert_sdk::TaskError>> {
                    __culvert_run(task, ctx)
                }
            }
        },
        syn::parse2(exported_check)?,
    ];
    items.extend(generated);
    Ok(quote!(#module))
}

fn is_task_attr(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    path.is_ident("task")
        || (path.segments.len() == 2
            && path.segments[0].ident == "culvert_sdk"
            && path.segments[1].ident == "task")
}

fn push_error(acc: &mut Option<syn::Error>, e: syn::Error) {
    match acc {
        Some(existing) => existing.combine(e),
        None => *acc = Some(e),
    }
}

/// The text of `///` doc comments, trimmed and joined.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_string()
}

fn expect_str(expr: &Expr) -> syn::Result<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new(other.span(), "expected a string literal")),
    }
}

fn expect_int<T: std::str::FromStr>(expr: &Expr, what: &str) -> syn::Result<T>
where
    T::Err: std::fmt::Display,
{
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<T>(),
        other => Err(syn::Error::new(
            other.span(),
            format!("{what} must be a non-negative integer literal"),
        )),
    }
}

fn expect_bool(expr: &Expr) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        other => Err(syn::Error::new(other.span(), "expected `true` or `false`")),
    }
}

/// Task ids and workflow names: `[A-Za-z0-9_-]`, 1 to 128 bytes. They are
/// parts of the `tenant::package::workflow::task` namespace, so `:` is out.
fn check_identifier(value: &str, span: Span, what: &str) -> syn::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            span,
            format!("invalid {what} '{value}': use 1 to 128 of [A-Za-z0-9_-]"),
        ))
    }
}

/// The id a rejected `#[task(...)]` declares: its `id = "..."` if that much
/// can be read, else the function's name.
fn declared_id(attr: &syn::Attribute, func: &syn::ItemFn) -> String {
    let Meta::List(list) = &attr.meta else {
        return func.sig.ident.to_string();
    };
    list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .ok()
        .and_then(|args| {
            args.iter().find_map(|arg| match arg {
                Meta::NameValue(nv) if nv.path.is_ident("id") => {
                    expect_str(&nv.value).ok().map(|lit| lit.value())
                }
                _ => None,
            })
        })
        .unwrap_or_else(|| func.sig.ident.to_string())
}

fn parse_task(attr: &syn::Attribute, func: &syn::ItemFn) -> syn::Result<TaskDef> {
    let args = match &attr.meta {
        Meta::Path(_) => Punctuated::new(),
        Meta::List(list) => {
            list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?
        }
        Meta::NameValue(nv) => {
            return Err(syn::Error::new(nv.span(), "expected #[task(...)]"));
        }
    };
    let mut task = TaskDef {
        id: func.sig.ident.to_string(),
        id_span: func.sig.ident.span(),
        func: func.sig.ident.clone(),
        description: doc_text(&func.attrs),
        dependencies: Vec::new(),
        retry: None,
        timeout_ms: None,
        trigger: None,
    };
    for arg in &args {
        match arg {
            Meta::NameValue(nv) if nv.path.is_ident("id") => {
                let lit = expect_str(&nv.value)?;
                task.id = lit.value();
                task.id_span = lit.span();
            }
            Meta::NameValue(nv) if nv.path.is_ident("description") => {
                task.description = expect_str(&nv.value)?.value();
            }
            Meta::NameValue(nv) if nv.path.is_ident("dependencies") => {
                let Expr::Array(array) = &nv.value else {
                    return Err(syn::Error::new(
                        nv.value.span(),
                        "dependencies must be an array of task ids: [\"a\", \"b\"]",
                    ));
                };
                for elem in &array.elems {
                    let lit = expect_str(elem)?;
                    task.dependencies.push((lit.value(), lit.span()));
                }
            }
            Meta::NameValue(nv) if nv.path.is_ident("timeout_ms") => {
                let ms: u64 = expect_int(&nv.value, "timeout_ms")?;
                if ms == 0 || ms > DAY_MS {
                    return Err(syn::Error::new(
                        nv.value.span(),
                        "timeout_ms must be between 1 and 86400000 (24 hours)",
                    ));
                }
                task.timeout_ms = Some(ms);
            }
            Meta::NameValue(nv) if nv.path.is_ident("trigger") => {
                task.trigger = Some(trigger::parse(&nv.value)?);
            }
            Meta::List(list) if list.path.is_ident("retry") => {
                task.retry = Some(parse_retry(list)?);
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "unknown task argument: expected id, description, dependencies, retry(...), timeout_ms or trigger",
                ));
            }
        }
    }
    check_identifier(&task.id, task.id_span, "task id")?;
    if func.sig.inputs.len() != 1 {
        // The whole parenthesized list: `inputs.span()` is only its first
        // token on stable, and the macro's call site when it is empty.
        return Err(syn::Error::new(
            func.sig.paren_token.span.join(),
            "a task takes exactly one argument: `ctx: &mut Context`",
        ));
    }
    Ok(task)
}

fn parse_retry(list: &syn::MetaList) -> syn::Result<RetryDef> {
    let args = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
    let mut retry = RetryDef {
        max_attempts: 3,
        backoff: quote!(Exponential),
        initial_delay_ms: 1000,
        max_delay_ms: 60_000,
        jitter: true,
        retry_on: quote!(TransientOnly),
    };
    // Where an initial delay above the maximum is reported: the
    // initial_delay_ms value if given, else the max_delay_ms value.
    let mut initial_span = None;
    let mut max_span = list.span();
    for arg in &args {
        let Meta::NameValue(nv) = arg else {
            return Err(syn::Error::new(
                arg.span(),
                "expected `key = value` in retry(...)",
            ));
        };
        let key = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "max_attempts" => {
                retry.max_attempts = expect_int(&nv.value, "max_attempts")?;
                if retry.max_attempts == 0 || retry.max_attempts > 100 {
                    return Err(syn::Error::new(
                        nv.value.span(),
                        "invalid retry policy: max_attempts must be between 1 and 100",
                    ));
                }
            }
            "backoff" => {
                let lit = expect_str(&nv.value)?;
                retry.backoff = match lit.value().as_str() {
                    "fixed" => quote!(Fixed),
                    "linear" => quote!(Linear),
                    "exponential" => quote!(Exponential),
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "invalid retry policy: unknown backoff '{other}', expected \"fixed\", \"linear\" or \"exponential\""
                            ),
                        ));
                    }
                };
            }
            "initial_delay_ms" => {
                retry.initial_delay_ms = expect_int(&nv.value, "initial_delay_ms")?;
                initial_span = Some(nv.value.span());
            }
            "max_delay_ms" => {
                retry.max_delay_ms = expect_int(&nv.value, "max_delay_ms")?;
                max_span = nv.value.span();
                if retry.max_delay_ms > DAY_MS {
                    return Err(syn::Error::new(
                        max_span,
                        "invalid retry policy: max_delay_ms is over 86400000 (24 hours)",
                    ));
                }
            }
            "jitter" => retry.jitter = expect_bool(&nv.value)?,
            "retry_on" => {
                let lit = expect_str(&nv.value)?;
                retry.retry_on = match lit.value().as_str() {
                    "all" => quote!(AllErrors),
                    "transient" => quote!(TransientOnly),
                    "never" => quote!(Never),
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "invalid retry policy: unknown retry_on '{other}', expected \"all\", \"transient\" or \"never\""
                            ),
                        ));
                    }
                };
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    "invalid retry policy: unknown key, expected max_attempts, backoff, initial_delay_ms, max_delay_ms, jitter or retry_on",
                ));
            }
        }
    }
    if retry.initial_delay_ms > retry.max_delay_ms {
        return Err(syn::Error::new(
            initial_span.unwrap_or(max_span),
            format!(
                "invalid retry policy: initial_delay_ms ({}) is above max_delay_ms ({})",
                retry.initial_delay_ms, retry.max_delay_ms
            ),
        ));
    }
    Ok(retry)
}

fn task_spec_tokens(task: &TaskDef) -> TokenStream2 {
    let id = &task.id;
    let description = &task.description;
    let deps = task.dependencies.iter().map(|(d, _)| d);
    let retry = match &task.retry {
        None => quote!(__c::no_retry()),
        Some(r) => {
            let RetryDef {
                max_attempts,
                backoff,
                initial_delay_ms,
                max_delay_ms,
                jitter,
                retry_on,
            } = r;
            quote! {
                __c::RetryPolicy {
                    max_attempts: #max_attempts,
                    backoff: __c::Backoff::#backoff,
                    initial_delay_ms: #initial_delay_ms,
                    max_delay_ms: #max_delay_ms,
                    jitter: #jitter,
                    retry_on: __c::RetryOn::#retry_on,
                }
            }
        }
    };
    let timeout = match task.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let trigger = match &task.trigger {
        Some(t) => {
            let t = t.tokens();
            quote!(::core::option::Option::Some(#t))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        __c::TaskSpec {
            id: ::std::string::String::from(#id),
            description: ::std::string::String::from(#description),
            dependencies: ::std::vec![#(::std::string::String::from(#deps)),*],
            retry: #retry,
            timeout_ms: #timeout,
            trigger: #trigger,
        }
    }
}

fn expand_export(input: TokenStream2) -> syn::Result<TokenStream2> {
    let args = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(input)?;
    let mut workflows = Vec::new();
    let mut name = quote!(::core::env!("CARGO_PKG_NAME"));
    let mut version = quote!(::core::env!("CARGO_PKG_VERSION"));
    let mut description = quote!(::core::env!("CARGO_PKG_DESCRIPTION"));
    let mut author = quote!(::core::env!("CARGO_PKG_AUTHORS"));
    let mut capabilities = quote!(__c::no_capabilities());
    for arg in &args {
        match arg {
            Meta::Path(path) => workflows.push(path.clone()),
            Meta::NameValue(nv) => {
                let lit = expect_str(&nv.value)?;
                let slot = if nv.path.is_ident("name") {
                    &mut name
                } else if nv.path.is_ident("version") {
                    &mut version
                } else if nv.path.is_ident("description") {
                    &mut description
                } else if nv.path.is_ident("author") {
                    &mut author
                } else {
                    return Err(syn::Error::new(
                        nv.path.span(),
                        "unknown key: expected name, version, description, author or capabilities(...)",
                    ));
                };
                *slot = quote!(#lit);
            }
            Meta::List(list) if list.path.is_ident("capabilities") => {
                capabilities = parse_capabilities(list)?;
            }
            Meta::List(list) => {
                return Err(syn::Error::new(
                    list.path.span(),
                    "unknown list: expected capabilities(...)",
                ));
            }
        }
    }
    if workflows.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "export_package! needs at least one #[workflow] module: export_package!(my_workflow)",
        ));
    }
    let entries = workflows.iter().map(|w| {
        quote_spanned! {w.span()=>
            __c::WorkflowEntry {
                name: #w::__CULVERT_NAME,
                spec: #w::__culvert_spec,
                schedules: #w::__culvert_schedules,
                run: #w::__culvert_run,
            }
        }
    });
    let exported = workflows.iter().map(|w| {
        quote_spanned! {w.span()=>
            impl __c::Exported for #w::Workflow {}
        }
    });
    let ty = format_ident!("__CulvertPackage");
    // The component's exports exist only in wasm builds: a native build of
    // the package crate (`cargo test`, with `culvert_sdk::testing`) has no
    // host to export them to, and a native cdylib cannot link them.
    Ok(quote! {
        const _: () = {
            use ::culvert_sdk::__private as __c;
            #(#exported)*
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use ::culvert_sdk::__private as __c;
            static WORKFLOWS: &[__c::WorkflowEntry] = &[#(#entries),*];
            static FACTS: __c::PackageFacts = __c::PackageFacts {
                name: #name,
                version: #version,
                description: #description,
                author: #author,
            };
            struct #ty;
            impl ::culvert_sdk::bindings::exports::culvert::plugin::metadata::Guest for #ty {
                fn describe() -> __c::PackageInfo {
                    __c::describe(&FACTS, WORKFLOWS, #capabilities)
                }
            }
            impl ::culvert_sdk::bindings::exports::culvert::plugin::task::Guest for #ty {
                fn run(
                    workflow: ::std::string::String,
                    task: ::std::string::String,
                    context_json: ::std::string::String,
                    attempt: __c::AttemptInfo,
                ) -> ::core::result::Result<::std::string::String, __c::WitTaskError> {
                    __c::run(WORKFLOWS, &workflow, &task, &context_json, attempt)
                }
            }
            ::culvert_sdk::bindings::export!(#ty with_types_in ::culvert_sdk::bindings);
        };
    })
}

fn parse_capabilities(list: &syn::MetaList) -> syn::Result<TokenStream2> {
    let args = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
    let mut env = Vec::new();
    let mut dirs = Vec::new();
    let mut http = Vec::new();
    let mut wall_clock = false;
    let mut random = false;
    let strings = |expr: &Expr| -> syn::Result<Vec<String>> {
        let Expr::Array(array) = expr else {
            return Err(syn::Error::new(expr.span(), "expected an array of strings"));
        };
        array
            .elems
            .iter()
            .map(|e| expect_str(e).map(|s| s.value()))
            .collect()
    };
    for arg in &args {
        let Meta::NameValue(nv) = arg else {
            return Err(syn::Error::new(arg.span(), "expected `key = value`"));
        };
        let key = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "env" => env = strings(&nv.value)?,
            "dirs" => dirs.extend(strings(&nv.value)?.into_iter().map(|d| (d, false))),
            "dirs_rw" => dirs.extend(strings(&nv.value)?.into_iter().map(|d| (d, true))),
            "http_hosts" => http = strings(&nv.value)?,
            "wall_clock" => wall_clock = expect_bool(&nv.value)?,
            "random" => random = expect_bool(&nv.value)?,
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    "unknown capability: expected env, dirs, dirs_rw, http_hosts, wall_clock or random",
                ));
            }
        }
    }
    let dirs = dirs.iter().map(|(path, writable)| {
        quote!(__c::DirRequest { guest_path: ::std::string::String::from(#path), writable: #writable })
    });
    Ok(quote! {
        __c::Capabilities {
            env: ::std::vec![#(::std::string::String::from(#env)),*],
            dirs: ::std::vec![#(#dirs),*],
            http_hosts: ::std::vec![#(::std::string::String::from(#http)),*],
            wall_clock: #wall_clock,
            random: #random,
        }
    })
}
