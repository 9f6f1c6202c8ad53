//! Computed values as answers and `<computed>` spans show them.

/// Formats a computed value as answers show it: integers without a decimal
/// point, other values rounded to at most four decimals.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_answers() {
        assert_eq!(format_value(1026.0), "1026");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(2.0 / 3.0), "0.6667");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(-0.00001), "0");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
