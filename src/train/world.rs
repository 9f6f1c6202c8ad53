//! The processes that train one run together (data parallelism, `train.devices`):
//! this process's rank among them, and sums over all of them.
//!
//! Every rank holds the whole model and walks the same plan of batches. Each
//! micro-batch is cut into `train.shards` shards as on one device; rank r trains
//! the r-th run of `shards / devices` of them, and the ranks' gradients are summed
//! before the optimizer steps, so each step takes the summed gradient of the whole
//! batch — the same gradient as one process training every shard, up to the order
//! of the additions. Sums go through NCCL ([`crate::ops::cuda::nccl`]) on CUDA.
//!
//! The step's measurements (its losses) and each rank's request to stop travel in
//! the same sum, so every rank logs the same losses and stops at the same step;
//! only the first rank writes to the run directory.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};

/// This process's place among the processes training one run.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// 0 for the process that writes the run; 1.. for the others.
    pub rank: usize,
    /// How many processes train the run.
    pub size: usize,
    /// Whether sums go through a collective (NCCL); without one this is the only
    /// process and every sum is the value itself.
    collective: bool,
    /// The process's request to stop (a signal), shared with the other ranks.
    stop: Option<&'static AtomicBool>,
}

impl World {
    /// One process training alone: nothing is summed.
    pub fn solo() -> World {
        World { rank: 0, size: 1, collective: false, stop: None }
    }

    /// Rank `rank` of `size`, summing through the communicator this process joined
    /// ([`crate::ops::cuda::nccl::init`]); `stop` is the flag a signal sets.
    pub fn joined(rank: usize, size: usize, stop: &'static AtomicBool) -> World {
        assert!(rank < size, "rank {rank} of a world of {size}");
        World { rank, size, collective: true, stop: Some(stop) }
    }

    /// Rank `rank` of `size` as it is before any sum: each sum returns this rank's
    /// own values. What one rank computes, for checking how ranks share the work.
    pub fn unsummed(rank: usize, size: usize) -> World {
        assert!(rank < size, "rank {rank} of a world of {size}");
        World { rank, size, collective: false, stop: None }
    }

    /// Whether this process's sums are its own values (no collective).
    pub fn is_solo(&self) -> bool {
        !self.collective
    }

    /// The shards of a micro-batch cut into `shards` this rank trains.
    pub fn shards(&self, shards: usize) -> Range<usize> {
        let per_rank = shards / self.size;
        self.rank * per_rank..(self.rank + 1) * per_rank
    }

    /// `t` summed element-wise over every rank.
    pub fn sum<B: Backend, const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        if !self.collective {
            return t;
        }
        #[cfg(feature = "cuda")]
        {
            use crate::ops::cuda::{Cuda, CudaTrain, cast, nccl};
            use burn::tensor::TensorPrimitive;
            if crate::ops::is::<B, CudaTrain>() {
                // Outside the autodiff graph: a sum of values, not of tracked tensors.
                let inner = cast::<B, CudaTrain, D, burn::tensor::Float>(t).inner();
                return cast(Tensor::<CudaTrain, D>::from_inner(self.sum(inner)));
            }
            if crate::ops::is::<B, Cuda>() {
                let primitive = cast::<B, Cuda, D, burn::tensor::Float>(t).into_primitive().tensor();
                let sum = nccl::all_reduce(primitive);
                return cast(Tensor::<Cuda, D>::from_primitive(TensorPrimitive::Float(sum)));
            }
        }
        panic!("summing across processes needs the CUDA backend (NCCL)")
    }

    /// `values` summed over every rank, in f64 (exact for the counts and flags they carry).
    pub fn sum_values<B: Backend>(&self, values: &[f64], device: &B::Device) -> Vec<f64> {
        if !self.collective || values.is_empty() {
            return values.to_vec();
        }
        let t = Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [values.len()]), (device, DType::F64));
        self.sum(t).into_data().convert::<f64>().to_vec::<f64>().expect("a sum of f64 values reads back as f64")
    }

    /// Whether any rank's `flag` is set: every rank stops when any rank stops (the
    /// first rank on an error writing the run, any rank on a signal).
    pub fn any<B: Backend>(&self, flag: bool, device: &B::Device) -> bool {
        if !self.collective {
            return flag;
        }
        self.sum_values::<B>(&[f64::from(u8::from(flag))], device)[0] > 0.0
    }

    /// Sums the ranks' gradients for `model`'s trainable parameters, and with them the
    /// step's `values` and the ranks' requests to stop (after which this process's
    /// flag is set when any rank asked). A parameter has a gradient after the sum
    /// when any rank had one for it, as one process training every shard would.
    pub fn sum_step<B: AutodiffBackend>(
        &self,
        model: &impl AutodiffModule<B>,
        mut grads: GradientsParams,
        values: &[f64],
        device: &B::Device,
    ) -> (GradientsParams, Vec<f64>) {
        if !self.collective {
            return (grads, values.to_vec());
        }
        /// A trainable parameter: its id, its number of elements, its dtype and this
        /// rank's gradient for it, flattened.
        type Entry<B> = (ParamId, usize, DType, Option<Tensor<<B as AutodiffBackend>::InnerBackend, 1>>);
        // Every rank lists the same parameters in the same order: the model's.
        struct Collect<'a, B: AutodiffBackend> {
            grads: &'a mut GradientsParams,
            entries: Vec<Entry<B>>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let value = param.val();
                if !value.is_require_grad() {
                    return;
                }
                let n = value.shape().num_elements();
                let grad = self.grads.remove::<B::InnerBackend, D>(param.id).map(|g| g.reshape([n]));
                self.entries.push((param.id, n, value.dtype(), grad));
            }
        }
        let mut collect = Collect::<B> { grads: &mut grads, entries: Vec::new() };
        model.visit(&mut collect);
        let entries = collect.entries;

        let stop = self.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let mut meta: Vec<f64> = values.to_vec();
        meta.push(f64::from(u8::from(stop)));
        meta.extend(entries.iter().map(|e| f64::from(u8::from(e.3.is_some()))));
        let inner_device: &burn::tensor::Device<B::InnerBackend> = device;

        // One sum per dtype: the gradients of that dtype, end to end.
        let mut summed: HashMap<ParamId, Tensor<B::InnerBackend, 1>> = HashMap::new();
        let mut dtypes: Vec<DType> = entries.iter().map(|e| e.2).collect();
        dtypes.dedup();
        let mut seen = Vec::new();
        for dtype in dtypes {
            if seen.contains(&dtype) {
                continue;
            }
            seen.push(dtype);
            let group: Vec<_> = entries.iter().filter(|e| e.2 == dtype).collect();
            let flat: Vec<Tensor<B::InnerBackend, 1>> = group
                .iter()
                .map(|(_, n, _, grad)| {
                    grad.clone().unwrap_or_else(|| Tensor::zeros([*n], (inner_device, dtype)))
                })
                .collect();
            let total = self.sum(Tensor::cat(flat, 0));
            let mut offset = 0;
            for (id, n, _, _) in group {
                summed.insert(*id, total.clone().narrow(0, offset, *n));
                offset += n;
            }
        }
        let meta = self.sum_values::<B::InnerBackend>(&meta, inner_device);
        let (values, rest) = meta.split_at(values.len());
        if rest[0] > 0.0
            && let Some(flag) = self.stop
        {
            flag.store(true, Ordering::SeqCst);
        }
        let present: HashMap<ParamId, bool> = entries.iter().zip(&rest[1..]).map(|(e, &p)| (e.0, p > 0.0)).collect();

        struct Register<'a, B: AutodiffBackend> {
            grads: &'a mut GradientsParams,
            summed: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
            present: HashMap<ParamId, bool>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Register<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.present.get(&param.id) != Some(&true) {
                    return;
                }
                if let Some(flat) = self.summed.remove(&param.id) {
                    let dims: [usize; D] = param.val().dims();
                    self.grads.register::<B::InnerBackend, D>(param.id, flat.reshape(dims));
                }
            }
        }
        let mut out = GradientsParams::new();
        let mut register = Register::<B> { grads: &mut out, summed, present };
        model.visit(&mut register);
        (out, values.to_vec())
    }

    /// `model` with every rank's parameters made the first rank's (each other rank
    /// adds zeros to them), so ranks start from the same weights however each built
    /// or loaded them.
    pub fn share_parameters<B: AutodiffBackend, M: AutodiffModule<B>>(&self, model: M) -> M {
        if !self.collective {
            return model;
        }
        struct Share<'a> {
            world: &'a World,
        }
        impl<B: AutodiffBackend> ModuleMapper<B> for Share<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                param.map(|value| {
                    let require_grad = value.is_require_grad();
                    let inner = value.inner();
                    let mine = if self.world.rank == 0 { inner } else { inner.zeros_like() };
                    Tensor::from_inner(self.world.sum(mine)).set_require_grad(require_grad)
                })
            }
        }
        model.map(&mut Share { world: self })
    }
}
