//! "Did you mean ...?" for near-miss names and ids.

/// The candidate closest to `wrong`, when one is close enough to be a likely typo.
#[must_use]
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c == wrong {
            continue;
        }
        let score = if c.to_lowercase() == wrong_lower {
            1.0
        } else {
            let jw = strsim::jaro_winkler(&wrong_lower, &c.to_lowercase());
            let lev = strsim::normalized_levenshtein(&wrong_lower, &c.to_lowercase());
            jw.max(lev)
        };
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean `x`?` for the closest candidate, if any.
#[must_use]
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(wrong, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("prot", ["port", "host"]), Some("port"));
        assert_eq!(closest("THRESHOLD", ["threshold"]), Some("threshold"));
        assert_eq!(
            closest("dsm-box-1-powr", ["dsm-box-1-power", "dsm-box-2-power"]),
            Some("dsm-box-1-power")
        );
        assert_eq!(closest("zzz", ["port", "host"]), None);
        assert_eq!(did_you_mean("x", std::iter::empty()), None);
    }
}
