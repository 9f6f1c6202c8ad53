//! The learning-rate schedule: linear warmup, then cosine decay to a floor.

/// Learning rate at optimizer step `step` (0-based) of `total` steps.
pub fn learning_rate(step: usize, total: usize, peak: f64, warmup: usize, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay_steps as f64).min(1.0);
    let floor = peak * min_ratio;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        assert!((learning_rate(0, 100, 1.0, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 1.0, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 100, 1.0, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 1.0, 10, 0.1) - 0.55).abs() < 1e-12);
        assert!((learning_rate(100, 100, 1.0, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((learning_rate(500, 100, 1.0, 0, 0.0)).abs() < 1e-12);
    }
}
