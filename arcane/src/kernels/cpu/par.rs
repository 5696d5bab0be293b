//! How the CPU kernels split work over cores (rayon's global pool, shared with gemm).

use rayon::prelude::*;

/// Below this many elements an elementwise kernel runs on the calling thread: a rayon task
/// costs a few microseconds, as much as streaming 16k floats.
pub const MIN_PARALLEL: usize = 1 << 14;

/// The chunk length for `len` items so that every thread gets a few chunks (for balance when
/// another process steals a core) and no chunk is shorter than `min`. Multiple of `align`.
pub fn chunk_len(len: usize, min: usize, align: usize) -> usize {
    let tasks = rayon::current_num_threads() * 4;
    let chunk = len.div_ceil(tasks).max(min);
    chunk.div_ceil(align) * align
}

/// Runs `f` on matching chunks of one output and up to three inputs of the same length, in
/// parallel when large enough.
pub fn zip_chunks<F>(out: &mut [f32], inputs: &[&[f32]], f: F)
where
    F: Fn(&mut [f32], &[&[f32]]) + Sync,
{
    let n = out.len();
    debug_assert!(inputs.iter().all(|x| x.len() == n));
    if n < MIN_PARALLEL {
        f(out, inputs);
        return;
    }
    let chunk = chunk_len(n, MIN_PARALLEL / 2, 16);
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let start = i * chunk;
        let parts: Vec<&[f32]> = inputs.iter().map(|x| &x[start..start + o.len()]).collect();
        f(o, &parts);
    });
}
