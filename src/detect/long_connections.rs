//! Long connections: durations at or past a threshold T (default 1 hour), graded by how far
//! past it they went. SQL selects the connections; this module grades them.

/// Grade and score of a duration against the threshold, or `None` below it.
///
/// Grades: `long` from T, `very_long` from 4 T, `extreme` from 24 T. Score:
/// min(1, ln(duration / T) / ln 24), 0 at the threshold and 1 from 24 T.
pub fn grade(duration_s: f64, threshold_s: f64) -> Option<(&'static str, f64)> {
    // NaN compares false both ways, so a NaN duration or threshold is never graded.
    let valid = threshold_s > 0.0 && duration_s >= threshold_s;
    if !valid {
        return None;
    }
    let ratio = duration_s / threshold_s;
    let grade = if ratio >= 24.0 {
        "extreme"
    } else if ratio >= 4.0 {
        "very_long"
    } else {
        "long"
    };
    Some((grade, (ratio.ln() / 24f64.ln()).clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades() {
        assert_eq!(grade(3599.0, 3600.0), None);
        assert_eq!(grade(3600.0, 3600.0), Some(("long", 0.0)));
        assert_eq!(grade(4.0 * 3600.0, 3600.0).unwrap().0, "very_long");
        assert_eq!(grade(24.0 * 3600.0, 3600.0), Some(("extreme", 1.0)));
        assert_eq!(grade(1e9, 3600.0).unwrap().1, 1.0);
        assert_eq!(grade(f64::NAN, 3600.0), None);
        assert_eq!(grade(10.0, 0.0), None);
    }
}
