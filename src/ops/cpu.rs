//! wmx's fused training operations on burn's Flex (the CPU backend): each pass one
//! walk over contiguous f32 rows, split across rayon's threads, instead of the
//! handful of burn operations (each a fresh tensor, several strided) that the
//! composed forms cost, and their autodiff's twice as many.
//!
//! They compute what the CUDA kernels compute, in f32 (the CPU trains in f32;
//! other dtypes take the composed path). Sums over a row run in the row's order;
//! sums over rows (a norm's weight gradient) are taken in fixed blocks of rows
//! and the blocks added in order, so a step gives the same bits whatever the
//! number of threads.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

use crate::backend::Cpu;

/// Elements per task below which a pass runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// Whether tensors of dtype `dtype` go through these kernels.
pub fn takes(dtype: DType) -> bool {
    dtype == DType::F32
}

/// `t` with its f32 elements contiguous from its start.
fn contiguous(t: FlexTensor) -> FlexTensor {
    match t.as_slice::<f32>() {
        Some(_) => t,
        None => t.to_contiguous(),
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// A tensor of `shape` holding `values`.
fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
}

/// A fresh output of `n` elements, not zeroed: each kernel below writes every
/// element of its output before anything reads it (zeroing first cost a memset
/// of every output, about 4% of a CPU training step, and a second pass over the
/// threads for each operation).
fn output(n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    // SAFETY: the capacity is `n`; every f32 bit pattern is a value, and the
    // callers overwrite each element before reading any (see above).
    unsafe { out.set_len(n) };
    out
}

/// The number of rows of a tensor of `shape` and the length of each (its last dimension).
fn rows(shape: &Shape) -> (usize, usize) {
    let d = *shape.as_slice().last().unwrap_or(&1);
    (shape.num_elements() / d.max(1), d)
}

/// Rows per task: enough that a task does about [`PARALLEL_MIN`] units of work.
fn per_task(work_per_row: usize) -> usize {
    (PARALLEL_MIN / work_per_row.max(1)).max(1)
}

/// Runs `f(first row, block)` over blocks of `out`'s rows of `width`, on rayon's
/// threads when the rows' work (`work_per_row` each) is enough to share.
fn blocks(out: &mut [f32], width: usize, work_per_row: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let n = out.len() / width.max(1);
    let per = per_task(work_per_row);
    if width == 0 || per >= n {
        f(0, out);
    } else {
        out.par_chunks_mut(per * width).enumerate().for_each(|(t, block)| f(t * per, block));
    }
}

/// [`blocks`] over two outputs with rows of `wa` and `wb` elements.
fn blocks2(
    a: &mut [f32],
    wa: usize,
    b: &mut [f32],
    wb: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
) {
    let n = a.len() / wa.max(1);
    let per = per_task(work_per_row);
    if wa == 0 || wb == 0 || per >= n {
        f(0, a, b);
    } else {
        a.par_chunks_mut(per * wa)
            .zip(b.par_chunks_mut(per * wb))
            .enumerate()
            .for_each(|(t, (x, y))| f(t * per, x, y));
    }
}

/// Whether every one of `tensors` is a Flex tensor of f32: what these kernels take.
pub fn f32s<B: burn::tensor::backend::Backend>(tensors: &[&FloatTensor<B>]) -> bool {
    super::is::<B, Cpu>()
        && tensors.iter().all(|t| (*t as &dyn std::any::Any).downcast_ref::<FlexTensor>().is_some_and(|t| t.dtype() == DType::F32))
}

/// `e^x` for each of `xs`, in place, for `x ≤ 88`: Cephes' `expf` (a degree-6
/// polynomial after reducing by `n·ln 2`, within 2 ulp of libm's over the
/// range the kernels use, `x ≤ 0`), written without branches or calls so the
/// compiler vectorises the loop; libm's `expf` is one call per element. Below
/// −87.3 (where e^x leaves f32's normal range) it gives 0.
pub fn exp_in_place(xs: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so `x − n·ln 2` keeps its low bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    for x in xs.iter_mut() {
        let v = x.clamp(-87.3, 88.0);
        let t = v * LOG2E + ROUND;
        let n = t - ROUND;
        let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
        let r = v - n * LN2_HI - n * LN2_LO;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
        let y = p * (r * r) + r + 1.0;
        let scale = f32::from_bits(((k + 127) as u32) << 23);
        *x = if *x < -87.3 { 0.0 } else { y * scale };
    }
}

/// A float primitive of backend `B` (which [`super::is`] Flex) as Flex's.
pub fn flex<B: burn::tensor::backend::Backend>(t: FloatTensor<B>) -> FlexTensor {
    contiguous(super::cast_primitive::<B, Cpu>(t))
}

/// An int primitive of backend `B` (which [`super::is`] Flex) as Flex's.
pub fn int<B: burn::tensor::backend::Backend>(t: IntTensor<B>) -> IntTensor<Cpu> {
    super::same_type(t)
}

/// A Flex tensor as a float primitive of backend `B` (which [`super::is`] Flex).
pub fn back<B: burn::tensor::backend::Backend>(t: FlexTensor) -> FloatTensor<B> {
    super::cast_primitive::<Cpu, B>(t)
}

pub mod heads {
    use super::*;

    /// `[a, b, c, d]` → `[a, c, b, d]` of f32, contiguous. Where the swapped view of `x`
    /// already is (a gradient that arrives as the swap of a contiguous tensor),
    /// it is that view, with no copy; otherwise output rows of `d` are read
    /// through `x`'s strides, shared between threads (making `x` contiguous first
    /// was burn-flex's element-by-element strided copy on one thread).
    pub fn swap(x: FlexTensor) -> FlexTensor {
        let layout = x.layout();
        let dims: [usize; 4] = layout.shape().as_slice().try_into().expect("a 4-dimensional tensor");
        let [a, b, c, d] = dims;
        let swapped = layout.transpose(1, 2);
        if swapped.is_contiguous() {
            return FlexTensor::from_arc(x.data_arc(), swapped, x.dtype());
        }
        let strides: [isize; 4] = layout.strides().try_into().expect("a 4-dimensional tensor");
        let start = layout.start_offset() as isize;
        let xs = x.storage::<f32>();
        let mut out = output(a * b * c * d);
        blocks(&mut out, d, d, |first, block| {
            for (i, row) in block.chunks_mut(d).enumerate() {
                // Output row `r` is (ai, ci, bi); the input holds it at (ai, bi, ci).
                let r = first + i;
                let (ai, ci, bi) = (r / (c * b), r / b % c, r % b);
                let from = start + ai as isize * strides[0] + bi as isize * strides[1] + ci as isize * strides[2];
                if strides[3] == 1 {
                    row.copy_from_slice(&xs[from as usize..from as usize + d]);
                } else {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = xs[(from + j as isize * strides[3]) as usize];
                    }
                }
            }
        });
        tensor(out, Shape::new([a, c, b, d]))
    }
}

pub mod product {
    use super::*;

    /// One operand of a product: a tensor's storage read through its layout, its
    /// last two dimensions as the matrix, optionally transposed (strides swapped).
    struct Operand<'a> {
        data: &'a [f32],
        start: isize,
        /// Strides of the batch dimensions, in elements.
        batch: Vec<isize>,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    }

    impl<'a> Operand<'a> {
        fn of(t: &'a FlexTensor, transposed: bool) -> Operand<'a> {
            let layout = t.layout();
            let (dims, strides) = (layout.shape().as_slice(), layout.strides());
            let d = dims.len();
            let (mut rows, mut cols, mut rs, mut cs) = (dims[d - 2], dims[d - 1], strides[d - 2], strides[d - 1]);
            if transposed {
                (rows, cols, rs, cs) = (cols, rows, cs, rs);
            }
            Operand {
                data: t.storage::<f32>(),
                start: layout.start_offset() as isize,
                batch: strides[..d - 2].to_vec(),
                rows,
                cols,
                row_stride: rs,
                col_stride: cs,
            }
        }

        /// Where matrix `b` (an index over the batch dimensions `dims`) starts.
        fn at(&self, b: usize, dims: &[usize]) -> *const f32 {
            let (mut rest, mut offset) = (b, self.start);
            for (&n, &stride) in dims.iter().zip(&self.batch).rev() {
                offset += (rest % n) as isize * stride;
                rest /= n;
            }
            // SAFETY: the layout addresses elements of its own storage.
            unsafe { self.data.as_ptr().offset(offset) }
        }
    }

    /// Total multiply-adds above which one product shares its blocks across threads.
    const PARALLEL_PRODUCT: usize = 192 * 192 * 192;
    /// …and above which a batch of small products runs its matrices in parallel.
    const PARALLEL_BATCH: usize = 128 * 128 * 128;

    /// `lhs · rhs` for each matrix of the batch dimensions `dims` (the operands'
    /// own, equal), into a fresh contiguous `[dims…, m, n]`. The output is written
    /// by gemm without being zeroed first (burn-flex zeroes, then copies each
    /// product's output into an aligned buffer: a tenth of a CPU training step,
    /// on the training thread alone).
    fn batched(lhs: &Operand, rhs: &Operand, dims: &[usize]) -> (Vec<f32>, Shape) {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        debug_assert_eq!(k, rhs.rows);
        let count: usize = dims.iter().product();
        let size = m * n;
        let mut shape = dims.to_vec();
        shape.extend([m, n]);
        if k == 0 || size == 0 || count == 0 {
            return (vec![0.0; count * size], Shape::from(shape));
        }
        let mut out: Vec<f32> = Vec::with_capacity(count * size);
        let base = out.as_mut_ptr() as usize;
        let one = |b: usize, parallelism: gemm::Parallelism| {
            // SAFETY: gemm reads the operands through their layouts' strides and
            // writes every element of matrix `b` of `out` (read_dst = false).
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    (base as *mut f32).add(b * size),
                    1,
                    n as isize,
                    false,
                    lhs.at(b, dims),
                    lhs.col_stride,
                    lhs.row_stride,
                    rhs.at(b, dims),
                    rhs.col_stride,
                    rhs.row_stride,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        };
        let work = m * n * k;
        if count >= 4 && count * work >= PARALLEL_BATCH && work < PARALLEL_PRODUCT {
            (0..count).into_par_iter().for_each(|b| one(b, gemm::Parallelism::None));
        } else {
            let parallelism =
                if work >= PARALLEL_PRODUCT { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            for b in 0..count {
                one(b, parallelism);
            }
        }
        // SAFETY: every matrix of the batch was written above.
        unsafe { out.set_len(count * size) };
        (out, Shape::from(shape))
    }

    fn batch_dims(t: &FlexTensor) -> Vec<usize> {
        let dims = t.layout().shape().as_slice();
        dims[..dims.len() - 2].to_vec()
    }

    /// `lhs · rhs` over the last two dimensions (f32 operands with the same batch
    /// dimensions), reading either through its layout (a transposed view costs no
    /// copy).
    pub fn forward(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
        let dims = batch_dims(lhs);
        let (out, shape) = batched(&Operand::of(lhs, false), &Operand::of(rhs, false), &dims);
        tensor(out, shape)
    }

    /// `(d lhs, d rhs) = (g · rhsᵀ, lhsᵀ · g)` for the product's gradient `g`.
    pub fn grads(lhs: &FlexTensor, rhs: &FlexTensor, g: &FlexTensor) -> (FlexTensor, FlexTensor) {
        let dims = batch_dims(lhs);
        let (d_lhs, s_lhs) = batched(&Operand::of(g, false), &Operand::of(rhs, true), &dims);
        let (d_rhs, s_rhs) = batched(&Operand::of(lhs, true), &Operand::of(g, false), &dims);
        (tensor(d_lhs, s_lhs), tensor(d_rhs, s_rhs))
    }
}

pub mod rms_norm {
    use super::*;

    /// `x / rms · w` over the last dimension, and each row's `rms`, `[rows]`.
    pub fn forward(x: FlexTensor, w: FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
        let (x, w) = (contiguous(x), contiguous(w));
        let shape = x.layout().shape().clone();
        let (n, d) = rows(&shape);
        let (xs, ws) = (values(&x), values(&w));
        let mut y = output(n * d);
        let mut rms = vec![0.0f32; n];
        blocks2(&mut y, d, &mut rms, 1, 2 * d, |first, y, rms| {
            for (i, (out, rr)) in y.chunks_mut(d).zip(rms.iter_mut()).enumerate() {
                let row = &xs[(first + i) * d..(first + i + 1) * d];
                let s: f32 = row.iter().map(|v| v * v).sum();
                *rr = (s / d as f32 + eps as f32).sqrt();
                for ((o, &v), &wj) in out.iter_mut().zip(row).zip(ws) {
                    *o = v / *rr * wj;
                }
            }
        });
        (tensor(y, shape), tensor(rms, Shape::from(vec![n])))
    }

    /// Rows per block of the weight gradient's sum.
    const BLOCK: usize = 64;

    /// `dx = (g·w − n·mean(g·w·n)) / rms` and `dw = Σ g·n`, `n = x / rms`.
    pub fn grads(x: FlexTensor, w: FlexTensor, rms: FlexTensor, g: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (x, w, rms, g) = (contiguous(x), contiguous(w), contiguous(rms), contiguous(g));
        let shape = x.layout().shape().clone();
        let (n, d) = rows(&shape);
        let (xs, ws, rs, gs) = (values(&x), values(&w), values(&rms), values(&g));
        let mut dx = output(n * d);
        blocks(&mut dx, d, 3 * d, |first, dx| {
            for (i, out) in dx.chunks_mut(d).enumerate() {
                let r = first + i;
                let (row, grow, rr) = (&xs[r * d..(r + 1) * d], &gs[r * d..(r + 1) * d], rs[r]);
                let mut s = 0.0f32;
                for j in 0..d {
                    s += grow[j] * ws[j] * (row[j] / rr);
                }
                let mean = s / d as f32;
                for j in 0..d {
                    out[j] = (grow[j] * ws[j] - row[j] / rr * mean) / rr;
                }
            }
        });
        let mut partial = vec![0.0f32; n.div_ceil(BLOCK) * d];
        blocks(&mut partial, d, BLOCK * d, |first, partial| {
            for (i, acc) in partial.chunks_mut(d).enumerate() {
                let b = first + i;
                for r in b * BLOCK..((b + 1) * BLOCK).min(n) {
                    let (row, grow, rr) = (&xs[r * d..(r + 1) * d], &gs[r * d..(r + 1) * d], rs[r]);
                    for j in 0..d {
                        acc[j] += grow[j] * (row[j] / rr);
                    }
                }
            }
        });
        let mut dw = vec![0.0f32; d];
        for block in partial.chunks(d.max(1)) {
            for (o, v) in dw.iter_mut().zip(block) {
                *o += v;
            }
        }
        (tensor(dx, shape), tensor(dw, w.layout().shape().clone()))
    }
}

pub mod rotary {
    use super::*;

    /// Rotate-half rotary embeddings of x `[batch, seq, heads, head_dim]` at
    /// positions `start..start + seq`, from tables `[positions, head_dim]`; with
    /// `backward`, the transposed rotation (x is then the output's gradient).
    pub fn rotate(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, start: usize, backward: bool) -> FlexTensor {
        let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
        let shape = x.layout().shape().clone();
        let [_, seq, heads, hd]: [usize; 4] =
            shape.as_slice().try_into().expect("rotary embeddings take [batch, seq, heads, head_dim]");
        assert!(start + seq <= cos.layout().shape().as_slice()[0], "rotary embeddings: positions beyond the table");
        let half = hd / 2;
        let (xs, cs, ss) = (values(&x), values(&cos), values(&sin));
        let mut y = output(xs.len());
        blocks(&mut y, hd, hd, |first, y| {
            for (i, out) in y.chunks_mut(hd).enumerate() {
                let r = first + i;
                let p = start + (r / heads) % seq;
                let (c, s) = (&cs[p * hd..(p + 1) * hd], &ss[p * hd..(p + 1) * hd]);
                let row = &xs[r * hd..(r + 1) * hd];
                if !backward {
                    // rotate(x) = cat(−x₂, x₁)
                    for j in 0..half {
                        out[j] = row[j] * c[j] + -row[j + half] * s[j];
                    }
                    for j in half..hd {
                        out[j] = row[j] * c[j] + row[j - half] * s[j];
                    }
                } else {
                    // unrotate(t) = cat(t₂, −t₁), t = dy·sin
                    for j in 0..half {
                        out[j] = row[j] * c[j] + row[j + half] * s[j + half];
                    }
                    for j in half..hd {
                        out[j] = row[j] * c[j] + -(row[j - half] * s[j - half]);
                    }
                }
            }
        });
        tensor(y, shape)
    }
}

pub mod softmax {
    use super::*;

    /// Which keys a row of scores sees.
    pub enum Keys<'a> {
        All,
        /// Row r of a head (`queries` per group, after `past` cached keys) sees
        /// keys up to `past + r % queries`.
        Causal { queries: usize, past: usize },
        /// `[batch, keys]`, true for keys that no row of that batch item sees.
        Padded(&'a [bool]),
    }

    /// `softmax(scores / divisor)` over the last dimension of scores `[batch, ..,
    /// rows, keys]`, masked keys 0 (a row with no key to see is all 0).
    pub fn forward(scores: FlexTensor, divisor: f64, visible: Keys) -> FlexTensor {
        let scores = contiguous(scores);
        let shape = scores.layout().shape().clone();
        let (n, keys) = rows(&shape);
        let per_head = shape.as_slice()[shape.num_dims() - 2].max(1);
        let per_batch = n / shape.as_slice()[0].max(1);
        if let Keys::Padded(ignore) = visible {
            assert_eq!(ignore.len(), shape.as_slice()[0] * keys, "softmax: a key mask of another shape than [batch, keys]");
        }
        let xs = values(&scores);
        let mut p = output(xs.len());
        let div = divisor as f32;
        blocks(&mut p, keys, 3 * keys, |first, p| {
            for (i, out) in p.chunks_mut(keys).enumerate() {
                let r = first + i;
                let row = &xs[r * keys..(r + 1) * keys];
                if let Keys::Padded(ignore) = visible {
                    let ignore = &ignore[(r / per_batch.max(1)) * keys..][..keys];
                    // Each score divided once, in a loop the compiler vectorises.
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = v / div;
                    }
                    let mut max = f32::NEG_INFINITY;
                    for (&v, &skip) in out.iter().zip(ignore) {
                        if !skip {
                            max = max.max(v);
                        }
                    }
                    for (o, &skip) in out.iter_mut().zip(ignore) {
                        *o = if skip { f32::NEG_INFINITY } else { *o - max };
                    }
                    exp_in_place(out);
                    let sum: f32 = out.iter().sum();
                    if sum > 0.0 {
                        out.iter_mut().for_each(|o| *o /= sum);
                    }
                    continue;
                }
                let n = match visible {
                    Keys::Causal { queries, past } => (past + (r % per_head) % queries.max(1) + 1).min(keys),
                    _ => keys,
                };
                for (o, &v) in out[..n].iter_mut().zip(&row[..n]) {
                    *o = v / div;
                }
                let max = out[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                for o in &mut out[..n] {
                    *o -= max;
                }
                exp_in_place(&mut out[..n]);
                let sum: f32 = out[..n].iter().sum();
                for o in &mut out[..n] {
                    *o /= sum;
                }
                out[n..].fill(0.0);
            }
        });
        tensor(p, shape)
    }

    /// `d scores = p·(dp − Σ p·dp) / divisor`.
    pub fn grad(p: FlexTensor, dp: FlexTensor, divisor: f64) -> FlexTensor {
        let (p, dp) = (contiguous(p), contiguous(dp));
        let shape = p.layout().shape().clone();
        let (_, keys) = rows(&shape);
        let (ps, gs) = (values(&p), values(&dp));
        let mut ds = output(ps.len());
        let div = divisor as f32;
        blocks(&mut ds, keys, 3 * keys, |first, ds| {
            for (i, out) in ds.chunks_mut(keys).enumerate() {
                let r = first + i;
                let (prow, grow) = (&ps[r * keys..(r + 1) * keys], &gs[r * keys..(r + 1) * keys]);
                let dot: f32 = prow.iter().zip(grow).map(|(a, b)| a * b).sum();
                for j in 0..keys {
                    out[j] = prow[j] * (grow[j] - dot) / div;
                }
            }
        });
        tensor(ds, shape)
    }
}

pub mod swiglu {
    use super::*;

    /// `silu(gate) · up`.
    pub fn forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let (gate, up) = (contiguous(gate), contiguous(up));
        let shape = gate.layout().shape().clone();
        let (gs, us) = (values(&gate), values(&up));
        let mut y = output(gs.len());
        blocks(&mut y, 1, 1, |at, y| {
            // σ(g) = 1 / (1 + e^−g)
            for (i, o) in y.iter_mut().enumerate() {
                *o = -gs[at + i];
            }
            exp_in_place(y);
            for (i, o) in y.iter_mut().enumerate() {
                let g = gs[at + i];
                *o = g * (1.0 / (1.0 + *o)) * us[at + i];
            }
        });
        tensor(y, shape)
    }

    /// `(d gate, d up) = (dy · up · σ(g)·(1 + g·(1 − σ(g))), dy · silu(g))`.
    pub fn grads(gate: FlexTensor, up: FlexTensor, dy: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (gate, up, dy) = (contiguous(gate), contiguous(up), contiguous(dy));
        let shape = gate.layout().shape().clone();
        let (gs, us, ds) = (values(&gate), values(&up), values(&dy));
        let mut d_gate = output(gs.len());
        let mut d_up = output(gs.len());
        blocks2(&mut d_gate, 1, &mut d_up, 1, 1, |at, dg, du| {
            for i in 0..dg.len() {
                dg[i] = -gs[at + i];
            }
            exp_in_place(dg);
            for i in 0..dg.len() {
                let (g, u, d) = (gs[at + i], us[at + i], ds[at + i]);
                let s = 1.0 / (1.0 + dg[i]);
                du[i] = d * (g * s);
                dg[i] = d * u * (s * (1.0 + g * (1.0 - s)));
            }
        });
        (tensor(d_gate, shape.clone()), tensor(d_up, shape))
    }
}

pub mod cross_entropy {
    use super::*;

    /// The targets as indices.
    fn indices(targets: IntTensor<Cpu>) -> Vec<usize> {
        let t = targets.to_contiguous();
        match t.dtype() {
            DType::I32 => t.as_slice::<i32>().expect("contiguous").iter().map(|&v| v as usize).collect(),
            DType::I64 => t.as_slice::<i64>().expect("contiguous").iter().map(|&v| v as usize).collect(),
            other => panic!("cross-entropy targets of dtype {other:?}"),
        }
    }

    /// Each row's `-log softmax(logits)[target]` `[batch, seq]` and log-sum-exp `[rows]`.
    pub fn forward(logits: FlexTensor, targets: IntTensor<Cpu>) -> (FlexTensor, FlexTensor) {
        let logits = contiguous(logits);
        let shape = logits.layout().shape().clone();
        let (n, v) = rows(&shape);
        let ts = indices(targets);
        let xs = values(&logits);
        let mut nll = vec![0.0f32; n];
        let mut lse = vec![0.0f32; n];
        blocks2(&mut nll, 1, &mut lse, 1, 2 * v, |first, nll, lse| {
            let mut shifted = vec![0.0f32; v];
            for (i, (loss, l)) in nll.iter_mut().zip(lse.iter_mut()).enumerate() {
                let r = first + i;
                let row = &xs[r * v..(r + 1) * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for (s, &x) in shifted.iter_mut().zip(row) {
                    *s = x - max;
                }
                exp_in_place(&mut shifted);
                let sum: f32 = shifted.iter().sum();
                *l = sum.ln() + max;
                *loss = *l - row[ts[r]];
            }
        });
        let dims = &shape.as_slice()[..shape.num_dims() - 1];
        (tensor(nll, Shape::from(dims.to_vec())), tensor(lse, Shape::from(vec![n])))
    }

    /// `d logits = g · (softmax(logits) − onehot(target))`.
    pub fn backward(logits: FlexTensor, targets: IntTensor<Cpu>, lse: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (logits, lse, grad) = (contiguous(logits), contiguous(lse), contiguous(grad));
        let shape = logits.layout().shape().clone();
        let (_, v) = rows(&shape);
        let ts = indices(targets);
        let (xs, ls, gs) = (values(&logits), values(&lse), values(&grad));
        let mut out = output(xs.len());
        blocks(&mut out, v, v, |first, out| {
            for (i, row) in out.chunks_mut(v).enumerate() {
                let r = first + i;
                let (x, l, g) = (&xs[r * v..(r + 1) * v], ls[r], gs[r]);
                for (o, &xi) in row.iter_mut().zip(x) {
                    *o = xi - l;
                }
                exp_in_place(row);
                for o in row.iter_mut() {
                    *o *= g;
                }
                row[ts[r]] -= g;
            }
        });
        tensor(out, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::exp_in_place;

    /// The vectorised `e^x` is within 2 ulp of the standard library's over the
    /// kernels' range, and 0 where e^x leaves f32's normal range or x is −∞.
    #[test]
    fn exp_in_place_is_the_standard_exp() {
        let mut xs: Vec<f32> = (0..200_000).map(|i| -87.0 + i as f32 * (87.0 + 80.0) / 200_000.0).collect();
        xs.extend([0.0, -0.0, 1e-8, -1e-8, 1.0, -1.0, 88.0]);
        let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        let mut got = xs.clone();
        exp_in_place(&mut got);
        for ((x, w), g) in xs.iter().zip(&want).zip(&got) {
            let ulp = (w.to_bits() as i64 - g.to_bits() as i64).abs();
            assert!(ulp <= 2, "e^{x}: {g} against {w} ({ulp} ulp)");
        }
        let mut tiny = [-87.5f32, -100.0, -1e30, f32::NEG_INFINITY];
        exp_in_place(&mut tiny);
        assert_eq!(tiny, [0.0; 4]);
    }
}
