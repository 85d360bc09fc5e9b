//! `#[workflow(schedule(...))]`: a schedule the package declares, checked
//! at compile time with the same crates the host uses (croner for the cron
//! expression, chrono-tz for the timezone), so that a typo fails the build
//! rather than the registration.

use crate::{expect_int, expect_str};
use croner::parser::{CronParser, Seconds, Year};
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Meta, Token};

/// One `schedule(...)`, checked.
pub(crate) struct ScheduleDef {
    cron: String,
    timezone: String,
    context: String,
    catch_up: &'static str,
    catch_up_cap: u32,
    overlap: &'static str,
}

/// Parse and check `schedule(cron = ..., ...)`.
pub(crate) fn parse(list: &syn::MetaList) -> syn::Result<ScheduleDef> {
    let args = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
    let mut def = ScheduleDef {
        cron: String::new(),
        timezone: "UTC".into(),
        context: "{}".into(),
        catch_up: "Skip",
        catch_up_cap: 10,
        overlap: "Allow",
    };
    let mut cron_seen = false;
    for arg in &args {
        let Meta::NameValue(nv) = arg else {
            return Err(syn::Error::new(arg.span(), UNKNOWN));
        };
        let key = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "cron" => {
                let lit = expect_str(&nv.value)?;
                CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(&lit.value())
                    .map_err(|e| {
                        syn::Error::new(
                            lit.span(),
                            format!(
                                "invalid cron expression '{}': {e} (six fields, seconds first, e.g. \"0 */5 * * * *\"; or the classic five)",
                                lit.value()
                            ),
                        )
                    })?;
                def.cron = lit.value();
                cron_seen = true;
            }
            "timezone" => {
                let lit = expect_str(&nv.value)?;
                if lit.value().parse::<chrono_tz::Tz>().is_err() {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown timezone '{}': use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                            lit.value()
                        ),
                    ));
                }
                def.timezone = lit.value();
            }
            "context" => {
                let lit = expect_str(&nv.value)?;
                match serde_json::from_str::<serde_json::Value>(&lit.value()) {
                    Ok(serde_json::Value::Object(_)) => def.context = lit.value(),
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            r##"context must be a JSON object in a string, such as context = r#"{"region": "eu"}"#"##,
                        ));
                    }
                }
            }
            "catch_up" => {
                let lit = expect_str(&nv.value)?;
                def.catch_up = match lit.value().as_str() {
                    "skip" => "Skip",
                    "latest" => "Latest",
                    "all" => "All",
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "catch_up must be \"skip\", \"latest\" or \"all\"",
                        ));
                    }
                };
            }
            "catch_up_cap" => {
                let cap: u32 = expect_int(&nv.value, "catch_up_cap")?;
                if !(1..=100).contains(&cap) {
                    return Err(syn::Error::new(
                        nv.value.span(),
                        "catch_up_cap must be 1 to 100",
                    ));
                }
                def.catch_up_cap = cap;
            }
            "overlap" => {
                let lit = expect_str(&nv.value)?;
                def.overlap = match lit.value().as_str() {
                    "allow" => "Allow",
                    "skip" => "Skip",
                    "queue_one" => "QueueOne",
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "overlap must be \"allow\", \"skip\" or \"queue_one\"",
                        ));
                    }
                };
            }
            _ => return Err(syn::Error::new(nv.path.span(), UNKNOWN)),
        }
    }
    if !cron_seen {
        return Err(syn::Error::new(
            list.span(),
            "a schedule needs `cron = \"...\"`, e.g. schedule(cron = \"0 */5 * * * *\")",
        ));
    }
    Ok(def)
}

const UNKNOWN: &str = "unknown schedule argument: expected cron, timezone, context, catch_up, catch_up_cap or overlap";

impl ScheduleDef {
    /// The `ScheduleSpec` expression for workflow `workflow`.
    pub(crate) fn tokens(&self, workflow: &str) -> TokenStream2 {
        let ScheduleDef {
            cron,
            timezone,
            context,
            catch_up_cap,
            ..
        } = self;
        let catch_up = syn::Ident::new(self.catch_up, proc_macro2::Span::call_site());
        let overlap = syn::Ident::new(self.overlap, proc_macro2::Span::call_site());
        quote! {
            __c::ScheduleSpec {
                workflow: ::std::string::String::from(#workflow),
                cron: ::std::string::String::from(#cron),
                timezone: ::std::string::String::from(#timezone),
                context_json: ::std::string::String::from(#context),
                catch_up: __c::CatchUp::#catch_up,
                catch_up_cap: #catch_up_cap,
                overlap: __c::Overlap::#overlap,
            }
        }
    }
}
