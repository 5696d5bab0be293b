//! Activation checkpointing by block (Chen et al. 2016, "Training Deep Nets with Sublinear
//! Memory Cost"): the forward pass keeps only each block's input and output, and the
//! backward pass recomputes one block at a time, so the activations a block's backward pass
//! needs (the fused kernels' saved state included) exist for one block at a time instead of
//! for all of them.
//!
//! How, with Burn's autodiff (which cannot run a backward pass inside another: its graph lock
//! is held while the nodes run):
//! - [`record`] runs the forward pass with a tape on this thread. The embeddings run through
//!   [`stem`] and every block through [`block`]; each such segment is computed *untracked*
//!   (its parameters and input made untracked, so no node keeps any state) and its output is
//!   cut from the graph: a fresh leaf that requires a gradient. The tape keeps the segment's
//!   input (the previous leaf), its output leaf, and how to run it again.
//! - [`Tape::backward`] runs the backward pass from the loss, which ends at the last block's
//!   output leaf; then, from the last block to the stem, recomputes each segment *tracked*
//!   from its saved input and runs a backward pass from `Σ output · gradient` (whose gradient
//!   with respect to the output is exactly the incoming one). That pass yields the segment's
//!   parameter gradients and its input's gradient, the previous segment's output gradient.
//!   The parameter gradients of all the passes are summed per parameter (a tied embedding
//!   gets the head's share and the stem's). Every graph is thus built just before its own
//!   backward pass: none has to outlive another pass's cleanup, which Burn's graph memory
//!   management does not guarantee for a graph whose parameter nodes were consumed before.
//!
//! Only public Burn API is used, so it works on every backend, with the fused CPU kernels and
//! without. Dropout replays: a block that has dropout re-seeds the backend's RNG with a seed
//! drawn from it before its first run, and with the same seed before the recomputation.

use std::any::Any;
use std::cell::RefCell;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;

thread_local! {
    /// The tape of the [`record`] running on this thread (a `Tape<B>`), if any.
    static TAPE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs a segment again, tracked, from its input (none for the stem).
type Recompute<B> = Box<dyn Fn(Option<Tensor<B, 3>>) -> Tensor<B, 3>>;

/// One checkpointed block, or the stem before the first one.
struct Segment<B: Backend> {
    /// The block's input as the forward pass gave it (the previous segment's output leaf);
    /// `None` for the stem.
    input: Option<Tensor<B, 3>>,
    /// The block's output: a leaf cut from the block, where the next part of the graph starts.
    output: Tensor<B, 3>,
    /// The RNG seed the block ran with (blocks with dropout only).
    seed: Option<u64>,
    forward: Recompute<B>,
}

/// The checkpointed segments (stem, blocks) of one forward pass, in order (see the module
/// docs).
pub struct Tape<B: Backend> {
    segments: Vec<Segment<B>>,
    /// False for [`record_uncut`]: blocks are seeded as here but run tracked, not cut.
    cut: bool,
}

impl<B: Backend> Tape<B> {
    /// Segments recorded (the stem and the blocks).
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// True when no segment was recorded.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// Puts back the tape that was active before a [`record`], also when its closure panics.
struct Restore(Option<Option<Box<dyn Any>>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            TAPE.with(|t| t.replace(before));
        }
    }
}

/// Runs `forward` (a forward pass of backend `B`) recording the blocks it runs through
/// [`block`]; returns its result and the tape for [`Tape::backward`].
pub fn record<B: Backend, R>(forward: impl FnOnce() -> R) -> (R, Tape<B>) {
    with_tape(true, forward)
}

/// Runs `forward` as [`record`] does (the same seeds for blocks with dropout), but with the
/// blocks tracked and kept as usual: what `record` and [`Tape::backward`] compute, without
/// recomputation; the reference that checkpointing with dropout is tested against.
pub fn record_uncut<B: Backend, R>(forward: impl FnOnce() -> R) -> R {
    with_tape::<B, R>(false, forward).0
}

/// Runs `forward` with a fresh tape on this thread.
fn with_tape<B: Backend, R>(cut: bool, forward: impl FnOnce() -> R) -> (R, Tape<B>) {
    let segments = Vec::new();
    let tape: Box<dyn Any> = Box::new(Tape::<B> { segments, cut });
    let mut restore = Restore(Some(TAPE.with(|t| t.replace(Some(tape)))));
    let out = forward();
    let before = restore.0.take().expect("restored once");
    let tape = TAPE.with(|t| t.replace(before));
    let tape = tape
        .and_then(|t| t.downcast::<Tape<B>>().ok())
        .expect("the tape of this record");
    (out, *tape)
}

/// When a [`record`] of backend `B` runs on this thread, whether it cuts blocks.
fn recording<B: Backend>() -> Option<bool> {
    TAPE.with(|t| {
        let tape = t.borrow();
        tape.as_ref()?.downcast_ref::<Tape<B>>().map(|t| t.cut)
    })
}

/// Runs `forward(module, x)`: plainly, or inside a [`record`] of backend `B` as a
/// checkpointed block (see the module docs). `dropout`: the block draws random numbers (its
/// RNG is then re-seeded so that the recomputation draws the same).
///
/// # Shapes
/// - x: `[B, T, C]`
/// - output: `[B, T, C]`
pub fn block<B: Backend, M: Module<B> + 'static>(
    module: &M,
    x: Tensor<B, 3>,
    dropout: bool,
    forward: impl Fn(&M, Tensor<B, 3>) -> Tensor<B, 3> + 'static,
) -> Tensor<B, 3> {
    let Some(cut) = recording::<B>() else {
        return forward(module, x);
    };
    let input = x.clone();
    let run = move |module: &M, x: Option<Tensor<B, 3>>| {
        forward(module, x.expect("a block has an input"))
    };
    checkpoint(module, Some(input), dropout, cut, run)
}

/// Runs `forward(module)`, the part of the forward pass before the first [`block`] (the
/// embeddings): plainly, or inside a [`record`] as a segment without input, recomputed last.
/// Without it the first block's input would be a graph that has to outlive the backward
/// passes of the other segments, which Burn's graph cleanup does not guarantee (it frees a
/// graph whose parameters' nodes an earlier backward pass consumed).
///
/// # Shapes
/// - output: `[B, T, C]`
pub fn stem<B: Backend, M: Module<B> + 'static>(
    module: &M,
    dropout: bool,
    forward: impl Fn(&M) -> Tensor<B, 3> + 'static,
) -> Tensor<B, 3> {
    let Some(cut) = recording::<B>() else {
        return forward(module);
    };
    checkpoint(module, None, dropout, cut, move |module: &M, _| {
        forward(module)
    })
}

/// [`block`] and [`stem`] inside a [`record`] (`cut`: not [`record_uncut`]).
fn checkpoint<B: Backend, M: Module<B> + 'static>(
    module: &M,
    x: Option<Tensor<B, 3>>,
    dropout: bool,
    cut: bool,
    forward: impl Fn(&M, Option<Tensor<B, 3>>) -> Tensor<B, 3> + 'static,
) -> Tensor<B, 3> {
    // Lazily initialised parameters get their values now: before the copies below (each copy
    // would otherwise draw its own) and before the seed (so that no initialisation draws
    // between the seed and the dropout masks in one run of the block but not the other).
    module.visit(&mut Materialize);
    let seed = dropout
        .then(|| {
            x.as_ref()
                .map(Tensor::device)
                .or(module.devices().first().cloned())
        })
        .flatten()
        .map(|device| {
            let seed = draw_seed::<B>(&device);
            B::seed(&device, seed);
            seed
        });
    if !cut {
        return forward(module, x);
    }
    // Untracked: `detach` would keep a leaf that requires a gradient (the previous block's
    // output) tracked, and every operation of the block would keep its state.
    let untracked = x.clone().map(|x| x.set_require_grad(false));
    let output = forward(&module.clone().no_grad(), untracked);
    let output = output.detach().require_grad();
    let module = module.clone();
    let segment = Segment {
        input: x,
        output: output.clone(),
        seed,
        forward: Box::new(move |x| forward(&module, x)),
    };
    TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        let tape = tape.as_mut().and_then(|t| t.downcast_mut::<Tape<B>>());
        tape.expect("recording").segments.push(segment);
    });
    output
}

/// A seed from the backend's RNG (so a run seeded per step draws the same ones on resume).
fn draw_seed<B: Backend>(device: &B::Device) -> u64 {
    let bits = Tensor::<B, 1>::random([2], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    bits.iter()
        .fold(0u64, |seed, x| (seed << 32) | u64::from(x.to_bits()))
}

/// Initialises every parameter of a module (reading a lazy parameter initialises it).
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

impl<B: AutodiffBackend> Tape<B> {
    /// The gradients of every parameter of `model` under `root` (the loss of the forward pass
    /// this tape recorded): equal to `GradientsParams::from_grads(root.backward(), model)`
    /// without the tape, up to the order of floating-point sums.
    pub fn backward<M: AutodiffModule<B>>(self, root: Tensor<B, 1>, model: &M) -> GradientsParams {
        let mut segments = self.segments;
        let mut pending: Vec<Option<Tensor<B::InnerBackend, 3>>> = vec![None; segments.len()];
        let mut sum = GradientsAccumulator::<M>::new();
        let grads = root.backward();
        take_output_grads(&segments, &mut pending, &grads);
        sum.accumulate(model, GradientsParams::from_grads(grads, model));
        while let Some(segment) = segments.pop() {
            // A block whose output reached no loss has no gradient to pass on.
            let Some(grad) = pending.pop().flatten() else {
                continue;
            };
            if let Some(seed) = segment.seed {
                B::seed(&segment.output.device(), seed);
            }
            let output = (segment.forward)(segment.input);
            let grads = (output * Tensor::from_inner(grad)).sum().backward();
            take_output_grads(&segments, &mut pending, &grads);
            sum.accumulate(model, GradientsParams::from_grads(grads, model));
        }
        sum.grads()
    }
}

/// Adds the gradients `grads` holds for the outputs of `segments` to `pending`.
fn take_output_grads<B: AutodiffBackend>(
    segments: &[Segment<B>],
    pending: &mut [Option<Tensor<B::InnerBackend, 3>>],
    grads: &B::Gradients,
) {
    for (segment, slot) in segments.iter().zip(pending.iter_mut()) {
        if let Some(grad) = segment.output.grad(grads) {
            *slot = Some(match slot.take() {
                Some(sum) => sum + grad,
                None => grad,
            });
        }
    }
}
