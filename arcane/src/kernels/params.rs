//! The plain parameter types of the fused operations: shared by the CPU kernels (feature
//! `flex`) and the generic path, so that they exist in every build (a CUDA-only build has no
//! `cpu` module).

/// The scalars of one AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// `β₁`.
    pub beta_1: f32,
    /// `β₂`.
    pub beta_2: f32,
    /// `ε`, added to `sqrt(v̂)`.
    pub epsilon: f32,
    /// The learning rate.
    pub lr: f32,
    /// `1 - lr·weight_decay`, the decoupled decay factor.
    pub decay: f32,
    /// `1 - β₁ᵗ`, the first moment's bias correction at this step `t`.
    pub correction_1: f32,
    /// `1 - β₂ᵗ`.
    pub correction_2: f32,
}

/// Which keys each query row sees: row `r` sees keys `0..=start + r % period`, or with a
/// sliding window of `W` only the last `W` of them (`p - W < j <= p` for `p = start + r %
/// period`, Mistral's and transformers' rule). Causal attention over one span is `start = 0,
/// period = T`; `T` new tokens after `start` cached ones, with the query heads of a group
/// folded into the rows, is `period = T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPrefix {
    /// Keys before the first query's own position.
    pub start: usize,
    /// Rows after which the pattern repeats (the tokens per folded query group).
    pub period: usize,
    /// The sliding window `W`: how many keys a row sees at most (`usize::MAX`: all).
    pub window: usize,
}

impl KeyPrefix {
    /// Causal attention over `t` positions.
    pub fn causal(t: usize) -> Self {
        Self {
            start: 0,
            period: t.max(1),
            window: usize::MAX,
        }
    }

    /// The same rows seeing at most the last `window` keys each (`usize::MAX`: all).
    pub fn with_window(self, window: usize) -> Self {
        Self {
            window: window.max(1),
            ..self
        }
    }

    /// How many keys row `r` sees.
    #[inline(always)]
    pub(crate) fn seen(self, r: usize) -> usize {
        self.start + r % self.period + 1
    }

    /// The first key row `r` sees (0 without a window).
    #[inline(always)]
    pub(crate) fn first(self, r: usize) -> usize {
        self.seen(r).saturating_sub(self.window)
    }

    /// How many keys the rows `r0..r1` need at most.
    pub(crate) fn keys_for(self, r0: usize, r1: usize) -> usize {
        (r0..r1).map(|r| self.seen(r)).max().unwrap_or(0)
    }
}

/// How the head weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadLayout {
    /// `[V, C]`: the token embedding table of a tied head.
    VocabMajor,
    /// `[C, V]`: a `Linear` head in Burn's `[in, out]` layout.
    ChannelMajor,
}
