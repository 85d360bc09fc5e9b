//! "Did you mean" for names a user typed: the closest known name, and the
//! names there are, for "not found" errors.
//!
//! Only names the caller may see are passed in (a tenant's own workflows,
//! say); tenant names are never suggested, since tenants must not learn of
//! each other.

/// At most this many names are listed after a "not found".
const MAX_LISTED: usize = 20;

/// The text to append to a "not found" error about `wanted`: `; did you
/// mean 'etl'? (known: etl, flaky, hello)`, or `; there are none` when
/// `known` is empty. The suggestion is the known name with the highest
/// Jaro-Winkler similarity, when it is similar enough (0.8) to be a typo.
pub fn did_you_mean<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let mut known: Vec<&str> = known.into_iter().collect();
    known.sort_unstable();
    known.dedup();
    if known.is_empty() {
        return "; there are none".into();
    }
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(wanted, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    let mut listed = known
        .iter()
        .take(MAX_LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > MAX_LISTED {
        listed.push_str(&format!(", and {} more", known.len() - MAX_LISTED));
    }
    match closest {
        Some(c) => format!("; did you mean '{c}'? (known: {listed})"),
        None => format!(" (known: {listed})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_closest_name_and_the_list() {
        assert_eq!(
            did_you_mean("etll", ["hello", "etl", "flaky"]),
            "; did you mean 'etl'? (known: etl, flaky, hello)"
        );
        assert_eq!(
            did_you_mean("zzz", ["hello", "etl"]),
            " (known: etl, hello)"
        );
        assert_eq!(did_you_mean("x", []), "; there are none");
        let many: Vec<String> = (0..25).map(|i| format!("w{i:02}")).collect();
        let text = did_you_mean("nope", many.iter().map(String::as_str));
        assert!(text.ends_with(", and 5 more)"), "{text}");
    }
}
