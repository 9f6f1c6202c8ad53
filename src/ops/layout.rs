//! How a matmul operand lies in memory, as cuBLAS reads it (`cublas.rs`, `cuda`
//! feature). Plain arithmetic on shapes and strides, so it is tested on every build.

/// How one operand lies in memory, as cuBLAS (column-major) reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Whether cuBLAS must transpose what it reads.
    pub transpose: bool,
    /// Leading dimension.
    pub ld: i64,
    /// Elements between consecutive matrices of the batch.
    pub batch_stride: i64,
}

/// The cuBLAS reading of a `[.., rows, cols]` operand with `strides`, as the
/// transpose of the row-major matrix (see `cublas::gemm`); `None` when the matrices are
/// neither row- nor column-major, or the batch is not evenly strided.
pub fn layout(shape: &[usize], strides: &[usize]) -> Option<Layout> {
    let d = shape.len();
    let (rows, cols) = (shape[d - 2], shape[d - 1]);
    let (sr, sc) = (strides[d - 2], strides[d - 1]);
    let (transpose, ld) = if sc == 1 && sr >= cols.max(1) {
        (false, sr)
    } else if sr == 1 && sc >= rows.max(1) {
        (true, sc)
    } else {
        return None;
    };
    // The batch dimensions must collapse into one stride.
    let mut batch_stride = None;
    let mut expected = None;
    for i in (0..d - 2).rev() {
        if shape[i] == 1 {
            continue;
        }
        match expected {
            None => batch_stride = Some(strides[i]),
            Some(e) if strides[i] != e => return None,
            Some(_) => {}
        }
        expected = Some(strides[i] * shape[i]);
    }
    Some(Layout {
        transpose,
        ld: ld as i64,
        batch_stride: batch_stride.unwrap_or(0) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_read_row_major_transposed_and_batched_operands() {
        // Row-major [2, 3, 4]: no transpose, ld 4, one matrix every 12.
        let l = layout(&[2, 3, 4], &[12, 4, 1]).unwrap();
        assert_eq!((l.transpose, l.ld, l.batch_stride), (false, 4, 12));
        // The same buffer with its last two dimensions swapped: [2, 4, 3].
        let t = layout(&[2, 4, 3], &[12, 1, 4]).unwrap();
        assert_eq!((t.transpose, t.ld, t.batch_stride), (true, 4, 12));
        // Heads of attention, [b, h, s, d] row-major: the batch collapses.
        let h = layout(&[2, 4, 5, 8], &[160, 40, 8, 1]).unwrap();
        assert_eq!(h.batch_stride, 40);
        // Batch dimensions that do not collapse (a slice of the heads) are refused.
        assert!(layout(&[2, 2, 5, 8], &[160, 40, 8, 1]).is_none());
        // Neither row- nor column-major.
        assert!(layout(&[3, 4], &[8, 2]).is_none());
        // A single matrix has no batch stride.
        assert_eq!(layout(&[3, 4], &[4, 1]).unwrap().batch_stride, 0);
    }
}
