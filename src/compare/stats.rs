//! Statistics for comparisons across seeds: mean ± sd, bootstrap intervals over
//! questions and seeds, and paired tests between groups on the same questions.

use crate::curriculum::rng::Rng;

/// Resamples of every bootstrap (intervals and tests).
pub const RESAMPLES: usize = 10_000;

/// The paired test's name, as tables and pages print it.
pub const TEST_NAME: &str = "paired bootstrap over questions and seeds (10,000 resamples), Holm-adjusted";

/// Mean and sample standard deviation (`None` for fewer than two values).
pub fn mean_sd(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n.max(1.0);
    let sd = (xs.len() > 1).then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, sd)
}

/// The 2.5th and 97.5th percentiles of `values` (sorted in place).
fn interval(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// One resample: seeds (rows) and questions (columns) drawn with replacement; the
/// mean correctness over the drawn cells.
fn resample_mean(correct: &[Vec<bool>], seeds: &[usize], questions: &[usize]) -> f64 {
    let mut hits = 0usize;
    for &s in seeds {
        hits += questions.iter().filter(|&&q| correct[s][q]).count();
    }
    hits as f64 / (seeds.len() * questions.len()).max(1) as f64
}

fn draw(rng: &mut Rng, n: usize) -> Vec<usize> {
    (0..n).map(|_| rng.below(n)).collect()
}

/// A 95% interval for the accuracy of a group of runs (one row per seed, one
/// column per question, the same questions in each row): a bootstrap that draws
/// seeds and questions with replacement.
pub fn accuracy_interval(correct: &[Vec<bool>], rng: &mut Rng) -> Option<(f64, f64)> {
    let questions = correct.first()?.len();
    if questions == 0 {
        return None;
    }
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let seeds = draw(rng, correct.len());
            let qs = draw(rng, questions);
            resample_mean(correct, &seeds, &qs)
        })
        .collect();
    Some(interval(&mut means))
}

/// A 95% interval for a mean over seeds alone (a per-exit share, say).
pub fn seed_interval(values: &[f64], rng: &mut Rng) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| draw(rng, values.len()).iter().map(|&i| values[i]).sum::<f64>() / values.len() as f64)
        .collect();
    Some(interval(&mut means))
}

/// A paired comparison of two groups on the same questions.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Mean accuracy of `a` minus that of `b`.
    pub difference: f64,
    /// 95% interval of the difference.
    pub low: f64,
    pub high: f64,
    /// Two-sided p-value: how often a resample's difference falls on the other side of zero, doubled.
    pub p: f64,
}

/// The paired bootstrap: each resample draws the questions once for both groups
/// (the pairing) and each group's seeds; the difference of the two means.
pub fn paired(a: &[Vec<bool>], b: &[Vec<bool>], rng: &mut Rng) -> Option<Paired> {
    let questions = a.first()?.len();
    if questions == 0 || b.first()?.len() != questions {
        return None;
    }
    let all: Vec<usize> = (0..questions).collect();
    let everyone = |rows: usize| -> Vec<usize> { (0..rows).collect() };
    let difference = resample_mean(a, &everyone(a.len()), &all) - resample_mean(b, &everyone(b.len()), &all);
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let qs = draw(rng, questions);
            let (sa, sb) = (draw(rng, a.len()), draw(rng, b.len()));
            resample_mean(a, &sa, &qs) - resample_mean(b, &sb, &qs)
        })
        .collect();
    let below = diffs.iter().filter(|&&d| d <= 0.0).count() as f64 / RESAMPLES as f64;
    let above = diffs.iter().filter(|&&d| d >= 0.0).count() as f64 / RESAMPLES as f64;
    let p = (2.0 * below.min(above)).min(1.0);
    let (low, high) = interval(&mut diffs);
    Some(Paired { difference, low, high, p })
}

/// Holm's step-down adjustment of `ps` for testing them together.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..ps.len()).collect();
    order.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
    let m = ps.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(accuracies: &[f64], questions: usize, rng: &mut Rng) -> Vec<Vec<bool>> {
        accuracies.iter().map(|&a| (0..questions).map(|_| rng.unit() < a).collect()).collect()
    }

    #[test]
    fn a_real_difference_is_significant_and_noise_is_not() {
        let mut rng = Rng::new(7);
        let strong = rows(&[0.9, 0.92, 0.88], 300, &mut rng);
        let weak = rows(&[0.7, 0.72, 0.69], 300, &mut rng);
        let same = rows(&[0.9, 0.9, 0.9], 300, &mut rng);
        let t = paired(&strong, &weak, &mut rng).unwrap();
        assert!(t.p < 0.01 && t.low > 0.1 && t.difference > 0.15, "{t:?}");
        let n = paired(&strong, &same, &mut rng).unwrap();
        assert!(n.p > 0.05 && n.low < 0.0 && n.high > 0.0, "{n:?}");
        let (lo, hi) = accuracy_interval(&strong, &mut rng).unwrap();
        assert!(lo < 0.9 && hi > 0.9 && hi - lo < 0.1, "{lo} {hi}");
    }

    #[test]
    fn holm_multiplies_the_smallest_by_the_count_and_keeps_the_order() {
        assert_eq!(holm(&[0.01, 0.04, 0.03]), vec![0.03, 0.06, 0.06]);
        let (mean, sd) = mean_sd(&[1.0, 2.0, 3.0]);
        assert_eq!((mean, sd), (2.0, Some(1.0)));
        assert_eq!(mean_sd(&[0.5]).1, None);
    }
}
