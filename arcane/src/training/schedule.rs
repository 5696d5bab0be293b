//! Learning rate per optimizer step: linear warmup, then cosine decay (nanoGPT's `get_lr`) or
//! warmup-stable-decay, to a floor of `min_lr_ratio · max_lr`.

use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::prelude::Backend;

use super::config::{ScheduleKind, TrainingConfig};

/// The schedule as a function of the step, plus the position Burn's Learner advances.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    max_lr: f64,
    min_lr: f64,
    warmup: usize,
    total: usize,
    kind: ScheduleKind,
    decay_fraction: f64,
    /// The next step [`LrScheduler::step`] returns the rate of.
    next_step: usize,
}

impl LrSchedule {
    /// The schedule of `config`, positioned at `start_step`.
    pub fn new(config: &TrainingConfig, start_step: usize) -> Self {
        let o = &config.optimizer;
        Self {
            max_lr: o.max_lr,
            min_lr: o.max_lr * o.min_lr_ratio,
            warmup: config.schedule.warmup_steps,
            total: config.schedule_horizon(),
            kind: config.schedule.kind,
            decay_fraction: config.schedule.decay_fraction,
            next_step: start_step,
        }
    }

    /// The learning rate of (0-based) optimizer step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.max_lr * (step + 1) as f64 / self.warmup as f64;
        }
        if step >= self.total {
            return self.min_lr;
        }
        match self.kind {
            ScheduleKind::Cosine => {
                let ratio = (step - self.warmup) as f64 / (self.total - self.warmup).max(1) as f64;
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                self.min_lr + coeff * (self.max_lr - self.min_lr)
            }
            ScheduleKind::Wsd => {
                let decay_steps = ((self.total as f64) * self.decay_fraction).round() as usize;
                let decay_start = self.total - decay_steps.min(self.total - self.warmup);
                if step < decay_start {
                    self.max_lr
                } else {
                    let ratio =
                        (step - decay_start) as f64 / (self.total - 1 - decay_start).max(1) as f64;
                    self.max_lr + ratio * (self.min_lr - self.max_lr)
                }
            }
        }
    }
}

impl LrScheduler for LrSchedule {
    /// The position, which is all the state there is.
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.lr(self.next_step);
        self.next_step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.next_step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.next_step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        let mut c = TrainingConfig::gpt2_124m();
        c.schedule.kind = kind;
        LrSchedule::new(&c, 0)
    }

    #[test]
    fn cosine_matches_nanogpt_at_warmup_peak_and_floor() {
        let s = schedule(ScheduleKind::Cosine);
        assert!((s.lr(0) - 6e-4 / 715.0).abs() < 1e-15);
        assert!((s.lr(714) - 6e-4).abs() < 1e-15);
        assert!((s.lr(715) - 6e-4).abs() < 1e-15);
        let mid = 715 + (19_073 - 715) / 2;
        assert!(
            (s.lr(mid) - 3.3e-4).abs() < 1e-7,
            "halfway is the mean of peak and floor"
        );
        assert!((s.lr(19_073) - 6e-5).abs() < 1e-15);
        assert!((s.lr(50_000) - 6e-5).abs() < 1e-15);
    }

    #[test]
    fn wsd_is_flat_then_linear() {
        let s = schedule(ScheduleKind::Wsd);
        let decay_start = 19_073 - (19_073.0f64 * 0.2).round() as usize;
        assert_eq!(s.lr(1000), 6e-4);
        assert_eq!(s.lr(decay_start - 1), 6e-4);
        assert!(s.lr(decay_start + 100) < 6e-4);
        assert!((s.lr(19_072) - 6e-5).abs() < 1e-7);
    }

    #[test]
    fn the_scheduler_resumes_where_it_stopped() {
        let mut a = schedule(ScheduleKind::Cosine);
        let first: Vec<f64> = (0..10).map(|_| a.step()).collect();
        let record = LrScheduler::to_record::<burn::backend::Flex>(&a);
        let mut b = schedule(ScheduleKind::Cosine).load_record::<burn::backend::Flex>(record);
        assert_eq!(b.step(), a.step());
        assert_eq!(first[3], schedule(ScheduleKind::Cosine).lr(3));
    }
}
