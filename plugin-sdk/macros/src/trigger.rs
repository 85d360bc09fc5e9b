//! Parsing `trigger = all(succeeded("a"), equals("mode", "full"))` into
//! tokens that build the WIT `trigger-rule`.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, ExprCall, ExprLit, Lit, UnOp};

/// A parsed trigger rule.
pub(crate) enum Trigger {
    Always,
    Combinator {
        kind: &'static str,
        conditions: Vec<Condition>,
    },
}

/// A parsed condition.
pub(crate) enum Condition {
    Task {
        variant: &'static str,
        task: String,
        span: Span,
    },
    Exists(String),
    Compare {
        variant: &'static str,
        key: String,
        value_json: String,
    },
}

impl Trigger {
    /// The task ids that the conditions name, with their spans.
    pub(crate) fn task_refs(&self) -> Vec<(&str, &Span)> {
        match self {
            Trigger::Always => Vec::new(),
            Trigger::Combinator { conditions, .. } => conditions
                .iter()
                .filter_map(|c| match c {
                    Condition::Task { task, span, .. } => Some((task.as_str(), span)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Tokens that build the rule; `__c` is the SDK's private module.
    pub(crate) fn tokens(&self) -> TokenStream2 {
        match self {
            Trigger::Always => quote!(__c::TriggerRule::Always),
            Trigger::Combinator { kind, conditions } => {
                let kind = syn::Ident::new(kind, Span::call_site());
                let conds = conditions.iter().map(Condition::tokens);
                quote!(__c::TriggerRule::#kind(::std::vec![#(#conds),*]))
            }
        }
    }
}

impl Condition {
    fn tokens(&self) -> TokenStream2 {
        match self {
            Condition::Task { variant, task, .. } => {
                let v = syn::Ident::new(variant, Span::call_site());
                quote!(__c::Condition::#v(::std::string::String::from(#task)))
            }
            Condition::Exists(key) => {
                quote!(__c::Condition::ContextExists(::std::string::String::from(#key)))
            }
            Condition::Compare {
                variant,
                key,
                value_json,
            } => {
                let v = syn::Ident::new(variant, Span::call_site());
                quote!(__c::Condition::#v(__c::KeyValue {
                    key: ::std::string::String::from(#key),
                    value_json: ::std::string::String::from(#value_json),
                }))
            }
        }
    }
}

const SYNTAX: &str = "expected `always`, or all(..), any(..) or none(..) of conditions such as succeeded(\"task\") or equals(\"key\", value)";

/// Parse the right-hand side of `trigger = ...`.
pub(crate) fn parse(expr: &Expr) -> syn::Result<Trigger> {
    match expr {
        Expr::Path(p) if p.path.is_ident("always") => Ok(Trigger::Always),
        Expr::Call(call) => {
            let kind = match call_name(call).as_deref() {
                Some("all") => "All",
                Some("any") => "Any",
                Some("none") => "None",
                _ => return Err(syn::Error::new(call.func.span(), SYNTAX)),
            };
            if call.args.is_empty() {
                return Err(syn::Error::new(
                    call.span(),
                    "a trigger rule needs at least one condition",
                ));
            }
            let conditions = call
                .args
                .iter()
                .map(parse_condition)
                .collect::<syn::Result<_>>()?;
            Ok(Trigger::Combinator { kind, conditions })
        }
        other => Err(syn::Error::new(other.span(), SYNTAX)),
    }
}

fn call_name(call: &ExprCall) -> Option<String> {
    match &*call.func {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        _ => None,
    }
}

fn parse_condition(expr: &Expr) -> syn::Result<Condition> {
    let Expr::Call(call) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            "expected a condition such as succeeded(\"task\") or equals(\"key\", value)",
        ));
    };
    let name = call_name(call).unwrap_or_default();
    let args: Vec<&Expr> = call.args.iter().collect();
    let one_string = |what: &str| -> syn::Result<(String, Span)> {
        match args.as_slice() {
            [
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }),
            ] => Ok((s.value(), s.span())),
            _ => Err(syn::Error::new(
                call.span(),
                format!("{name}(..) takes one string: the {what}"),
            )),
        }
    };
    let task_variant = match name.as_str() {
        "succeeded" => Some("TaskSucceeded"),
        "failed" => Some("TaskFailed"),
        "skipped" => Some("TaskSkipped"),
        _ => None,
    };
    if let Some(variant) = task_variant {
        let (task, span) = one_string("task id")?;
        return Ok(Condition::Task {
            variant,
            task,
            span,
        });
    }
    if name == "exists" {
        return Ok(Condition::Exists(one_string("context key")?.0));
    }
    let (variant, numeric) = match name.as_str() {
        "equals" => ("ContextEquals", false),
        "not_equals" => ("ContextNotEquals", false),
        "greater_than" => ("ContextGreaterThan", true),
        "less_than" => ("ContextLessThan", true),
        "contains" => ("ContextContains", false),
        _ => {
            return Err(syn::Error::new(
                call.func.span(),
                format!(
                    "unknown condition '{name}': expected succeeded, failed, skipped, exists, equals, not_equals, greater_than, less_than or contains"
                ),
            ));
        }
    };
    let [key, value] = args.as_slice() else {
        return Err(syn::Error::new(
            call.span(),
            format!("{name}(..) takes a context key and a value"),
        ));
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Str(key), ..
    }) = key
    else {
        return Err(syn::Error::new(
            key.span(),
            "the context key must be a string literal",
        ));
    };
    let (value_json, is_number) = json_literal(value)?;
    if numeric && !is_number {
        return Err(syn::Error::new(
            value.span(),
            format!("{name}(..) compares numbers: the value must be a number literal"),
        ));
    }
    Ok(Condition::Compare {
        variant,
        key: key.value(),
        value_json,
    })
}

/// A literal as JSON text, and whether it is a number.
fn json_literal(expr: &Expr) -> syn::Result<(String, bool)> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Str(s) => Ok((json_string(&s.value()), false)),
            Lit::Int(i) => Ok((i.base10_digits().to_string(), true)),
            Lit::Float(f) => Ok((f.base10_digits().to_string(), true)),
            Lit::Bool(b) => Ok((b.value.to_string(), false)),
            other => Err(syn::Error::new(
                other.span(),
                "expected a string, number or bool literal",
            )),
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            let (inner, is_number) = json_literal(&u.expr)?;
            if !is_number {
                return Err(syn::Error::new(u.span(), "only numbers can be negative"));
            }
            Ok((format!("-{inner}"), true))
        }
        other => Err(syn::Error::new(
            other.span(),
            "expected a string, number or bool literal",
        )),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
