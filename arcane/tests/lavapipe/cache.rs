//! The fixed-shape KV cache on wgpu: decoding through it gives the full forward's logits at
//! every bucket boundary, through each of its masks (none, causal, explicit, windowed).

use arcane::model::KvCache;

use super::parity::{FIXTURES, LOGITS_TOL};
use super::*;
use crate::common::values;

/// Bucket of the test caches: 8 positions, so 40 tokens cross 5 boundaries.
const BUCKET: usize = 8;

/// Chunk lengths fed to the cache, 40 tokens in all: a 3-token prefill, single tokens up to
/// the first boundary (the last one fills its bucket: no mask), a 5-token chunk that crosses
/// into a new bucket, single tokens, a chunk that ends on a boundary, a whole bucket at once,
/// and single tokens to the end (an explicit mask inside each bucket).
const CHUNKS: [usize; 24] = [
    3, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 1, 4, 8, 1, 1, 1, 1, 1, 1, 1, 1,
];

/// Logits of `seq` fed through a cache of bucket [`BUCKET`] in `chunks`, row after row.
fn cached_logits<B: Backend>(model: &Gpt<B>, seq: &[u32], chunks: &[usize]) -> Vec<f32> {
    let device = model.device();
    let config = model.config();
    let mut cache = KvCache::with_bucket(config.n_layers, config.max_seq_len, BUCKET);
    let mut out = Vec::new();
    let mut at = 0;
    for &t in chunks {
        let chunk = seq[at..at + t].to_vec();
        out.extend(values(
            model.forward_cached(token_rows(&[chunk], &device), &mut cache),
        ));
        at += t;
    }
    assert_eq!(cache.len(), seq.len());
    out
}

#[test]
fn cached_decoding_equals_the_full_forward_at_every_bucket_boundary() {
    for (name, _) in FIXTURES {
        let (cpu, gpu_model) = (
            load::<Cpu>(name, &Default::default()),
            load::<Gpu>(name, &gpu()),
        );
        let seq = sequence(CHUNKS.iter().sum(), cpu.config().vocab_size, 3);
        let full_gpu = values(gpu_model.forward(token_rows(&[seq.clone()], &gpu())));
        let full_cpu = values(cpu.forward(token_rows(&[seq.clone()], &Default::default())));
        let cached = cached_logits(&gpu_model, &seq, &CHUNKS);
        assert_close(
            &format!("{name} cached vs full forward (wgpu)"),
            &cached,
            &full_gpu,
            LOGITS_TOL,
        );
        assert_close(
            &format!("{name} cached (wgpu) vs full forward (cpu)"),
            &cached,
            &full_cpu,
            LOGITS_TOL,
        );
        // A first chunk of exactly one bucket: queries and keys are the same span, the plain
        // causal mask (`is_causal`, or an explicit one with grouped queries or a window).
        let mut chunks = vec![BUCKET];
        chunks.extend(std::iter::repeat_n(1, 12));
        let n = chunks.iter().sum::<usize>();
        let cached = cached_logits(&gpu_model, &seq[..n], &chunks);
        let v = cpu.config().vocab_size;
        assert_close(
            &format!("{name} bucket-sized prefill"),
            &cached,
            &full_cpu[..n * v],
            LOGITS_TOL,
        );
    }
}
