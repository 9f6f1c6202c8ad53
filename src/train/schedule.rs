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

/// Factor on the learning rate `into` steps (0-based) into a stage after the first:
/// it climbs linearly from `1 / warmup` to 1 over `warmup` steps, so a stage's new
/// programs do not meet the optimizer at full rate (1 when `warmup` is 0).
pub fn stage_warmup(into: usize, warmup: usize) -> f64 {
    if into < warmup {
        (into + 1) as f64 / warmup as f64
    } else {
        1.0
    }
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

    #[test]
    fn a_stage_warms_up_again_then_follows_the_schedule() {
        assert!((stage_warmup(0, 4) - 0.25).abs() < 1e-12);
        assert!((stage_warmup(2, 4) - 0.75).abs() < 1e-12);
        assert_eq!(stage_warmup(3, 4), 1.0);
        assert_eq!(stage_warmup(40, 4), 1.0);
        assert_eq!(stage_warmup(0, 0), 1.0);
    }
}
