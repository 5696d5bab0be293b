//! Pre-training with burn-train: configuration, grouped AdamW, LR schedule, global-norm
//! clipping, the step-based loop, checkpoints with exact resume, metrics and loss pictures.

mod adapters;
mod checkpoint;
mod checkpointer;
mod clip;
mod components;
mod config;
mod ddp;
mod ddp_step;
mod evaluate;
mod finetune;
mod loader;
mod log;
mod metrics;
mod optimizer;
mod outcome;
mod plot;
mod readback;
mod renderer;
mod report;
mod resume;
mod run;
mod schedule;
mod sft_recipe;
mod sft_source;
mod step;
mod stepping;
mod strategy;
mod suite;

pub use checkpoint::{checkpoint_steps, read_state, DataTokens, TrainState};
pub use clip::clip_global_norm;
pub use components::{ArcaneComponents, ArcaneLoop, EvalHook, LoopStart, SuiteHook};
pub use config::{
    EvalSuiteEval, FinetuneConfig, HellaswagEval, OptimizerConfig, ScheduleConfig, ScheduleKind,
    SftRunConfig, TrainingConfig, TRAINING_PRESETS,
};
pub use ddp::DdpPlan;
pub use finetune::FinetuneRecipe;
pub use loader::{BatchSource, LmDataLoader};
pub use log::{read_metrics, MetricRecord, MetricsLog, METRICS_FILE};
pub use metrics::{peak_flops_for, StepMetric, StepMetricKind, StepStats, GPU_PEAK_FLOPS};
pub use optimizer::{FusedAdamW, GroupedAdamW, GroupedAdamWRecord, ParamGroups};
pub use outcome::{LoopOutcome, StopReason};
pub use plot::{plot_runs, PlotRun};
pub use resume::config_changes;
#[cfg(feature = "ddp")]
pub use run::train_ddp;
pub use run::{read_run_config, train, train_data_parallel, TrainOptions, RUN_CONFIG};
pub use schedule::LrSchedule;
pub use sft_recipe::{sft_adapter_chat, SftPrepared, SftRecipe};
pub use sft_source::{
    sft_batch, sft_packed_batch, SftSampler, SftSet, SFT_TRAIN_FILE, SFT_VAL_FILE,
};
pub use step::{lm_loss, masked_lm_loss, token_metrics, LmBatch, LmOutput};
