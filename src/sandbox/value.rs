//! Computed values as answers and `<computed>` spans show them.

/// Formats a computed value as answers show it: integers without a decimal
/// point, other values rounded to at most four decimals.
pub fn format_value(v: f64) -> String {
    format_value_places(v, 4)
}

/// [`format_value`] rounding non-integers to at most `places` decimals.
pub fn format_value_places(v: f64, places: u32) -> String {
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
    let text = format!("{v:.*}", places as usize);
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
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
        assert_eq!(format_value_places(2.0 / 3.0, 2), "0.67");
        assert_eq!(format_value_places(-2.5, 0), "-2");
        assert_eq!(format_value_places(-1234567.0, 2), "-1234567");
        assert_eq!(format_value_places(20.4, 0), "20");
    }
}
