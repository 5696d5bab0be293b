//! How a training run ended, and the running totals that the report at the end is made of.

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// `max_steps` reached.
    Finished,
    /// The user stopped it (the dashboard's quit key, SIGINT or SIGTERM); a checkpoint was
    /// written.
    Interrupted,
    /// The loss or gradient norm was NaN or infinite at this step; the update was not applied.
    NonFinite {
        /// The step whose loss was not finite.
        step: usize,
        /// The loss.
        loss: f64,
        /// The gradient norm.
        grad_norm: f64,
    },
    /// Something failed (I/O, a checkpoint write).
    Failed(String),
}

/// What the loop reports back to its caller.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    /// Optimizer steps completed.
    pub step: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Last text sample.
    pub sample: Option<String>,
    /// Mean throughput over the steps of this process.
    pub tokens_per_s: f64,
    /// Mean MFU over the steps of this process, when known.
    pub mfu: Option<f64>,
    /// Step of the last complete checkpoint.
    pub checkpoint: Option<usize>,
}

impl LoopOutcome {
    /// The outcome of a run that has not taken a step yet in this process, resuming from
    /// checkpoint `checkpoint` (if any).
    pub(crate) fn starting(step: usize, checkpoint: Option<usize>) -> Self {
        Self {
            step,
            stop: StopReason::Finished,
            val_loss: None,
            train_loss: None,
            sample: None,
            tokens_per_s: 0.0,
            mfu: None,
            checkpoint,
        }
    }
}

/// Throughput sums over the steps of this process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    /// Tokens trained on.
    pub tokens: f64,
    /// Seconds spent in steps.
    pub seconds: f64,
    /// Sum of the per-step MFU.
    pub mfu_sum: f64,
    /// Steps taken.
    pub steps: usize,
}

impl Totals {
    /// Adds one step.
    pub fn add(&mut self, tokens: usize, seconds: f64, mfu: Option<f64>) {
        self.tokens += tokens as f64;
        self.seconds += seconds;
        self.mfu_sum += mfu.unwrap_or(0.0);
        self.steps += 1;
    }

    /// Writes the mean throughput and MFU into `out` (nothing when no step was taken).
    pub fn finish(&self, out: &mut LoopOutcome, mfu_known: bool) {
        if self.steps > 0 {
            out.tokens_per_s = self.tokens / self.seconds;
            out.mfu = mfu_known.then(|| self.mfu_sum / self.steps as f64);
        }
    }
}
