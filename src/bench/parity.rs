//! `wmx bench parity`: logits and greedy tokens against transformers' fixtures.


use burn::tensor::{backend::Backend};



/// `wmx bench parity`: each fixture's logits and greedy tokens against
/// transformers, in `dtype`. f32 passes within 1e-4 relative per logit with equal
/// greedy tokens; bf16 within 1e-2 of the logits' scale of transformers' own bf16
/// logits (bf16 alone moves them ~1.5e-2 from the f32 ones).
pub struct ParityBench<'a> {
    pub fixtures: &'a [std::path::PathBuf],
    pub dtype: crate::config::DType,
}

impl crate::backend::BackendTask for ParityBench<'_> {
    type Output = anyhow::Result<Vec<(crate::model::parity::Parity, bool)>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        crate::backend::set_float_dtype::<B>(&device, self.dtype).map_err(anyhow::Error::msg)?;
        self.fixtures
            .iter()
            .map(|dir| {
                let p = crate::model::parity::check::<B>(dir, &device)?;
                let ok = match self.dtype {
                    crate::config::DType::F32 => p.logits.f32_excess <= 0.0 && p.greedy_equal,
                    _ => p.logits_bf16.is_some_and(|d| d.max_scaled <= 1e-2),
                };
                Ok((p, ok))
            })
            .collect()
    }
}

/// `wmx bench parity --trace`: each fixture's decoder run step by step on the
/// backend and on the CPU in `dtype` ([`crate::model::parity::trace`]), to find
/// where a backend's rounding departs from the CPU's.
pub struct ParityTrace<'a> {
    pub fixtures: &'a [std::path::PathBuf],
    pub dtype: crate::config::DType,
}

impl crate::backend::BackendTask for ParityTrace<'_> {
    type Output = anyhow::Result<Vec<(String, Vec<crate::model::parity::Step>)>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use crate::backend::Cpu;
        let cpu = Default::default();
        crate::backend::set_float_dtype::<Cpu>(&cpu, self.dtype).map_err(anyhow::Error::msg)?;
        if std::any::TypeId::of::<B>() != std::any::TypeId::of::<Cpu>() {
            crate::backend::set_float_dtype::<B>(&device, self.dtype).map_err(anyhow::Error::msg)?;
        }
        self.fixtures
            .iter()
            .map(|dir| {
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                Ok((name, crate::model::parity::trace::<Cpu, B>(dir, &cpu, &device)?))
            })
            .collect()
    }
}


/// One fixture's parity as `wmx bench parity` prints it.
pub fn parity_line(p: &crate::model::parity::Parity, ok: bool, backend: &str, dtype: crate::config::DType) -> String {
    format!(
        "{:<12} {} {:?}: vs f32 max |Δlogit| {:.2e} (scaled {:.2e}, f32 excess {:+.2e}); vs bf16 scaled {}; greedy tokens {} → {}",
        p.fixture,
        backend,
        dtype,
        p.logits.max_abs,
        p.logits.max_scaled,
        p.logits.f32_excess,
        p.logits_bf16.map_or("-".into(), |d| format!("{:.2e}", d.max_scaled)),
        if p.greedy_equal { "equal" } else { "differ" },
        if ok { "pass" } else { "FAIL" }
    )
}

/// One fixture's step-by-step trace as `wmx bench parity --trace` prints it.
pub fn trace_table(fixture: &str, backend: &str, dtype: crate::config::DType, steps: &[crate::model::parity::Step]) -> String {
    let mut out = format!("{fixture}: {backend} against cpu, {dtype:?}, each step from the cpu's input\n");
    for s in steps {
        out += &format!(
            "  {:<36} scaled {:.2e}  max |Δ| {:.2e}  differing {:5.1}%\n",
            s.name,
            s.distance.max_scaled,
            s.distance.max_abs,
            100.0 * s.differing
        );
    }
    out
}
