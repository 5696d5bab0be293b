//! Matrix products through the `gemm` crate (the one burn-flex uses), with explicit strides so
//! that transposed operands are read in place, and accumulation into the destination.

/// A read-only strided matrix: element `(i, j)` is at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// The highest index read for an `m x n` view, plus one.
    fn extent(&self, m: usize, n: usize) -> usize {
        if m == 0 || n == 0 {
            0
        } else {
            (m - 1) * self.rs + (n - 1) * self.cs + 1
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` with `dst` row-major; adds to `dst` when
/// `accumulate`, overwrites it otherwise. Runs on every core.
pub fn matmul(
    dst: &mut [f32],
    accumulate: bool,
    lhs: MatRef,
    rhs: MatRef,
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(dst.len() >= m * n, "gemm: destination too small");
    assert!(
        lhs.data.len() >= lhs.extent(m, k),
        "gemm: left operand too small"
    );
    assert!(
        rhs.data.len() >= rhs.extent(k, n),
        "gemm: right operand too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index inside the slices; `dst` is exclusive.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// `dst (+)= lhs · rhs` on raw strided matrices (`[m, k]` times `[k, n]`), on the calling
/// thread only (for callers that already run one task per core).
///
/// # Safety
/// Every element `(i, j)` addressed through the pointers and strides must be valid: `dst` for
/// writes (and reads when `accumulate`), not aliased by the operands or other threads.
pub unsafe fn matmul_raw(
    m: usize,
    k: usize,
    n: usize,
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
