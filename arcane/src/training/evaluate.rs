//! What happens at every validation of a run: the validation loss, a text sample, the optional
//! extra evaluation (HellaSwag), their lines in the log and on the dashboard, and the loss
//! picture.

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{
    EventProcessorTraining, InferenceStep, Learner, LearnerEvent, TrainingItem, ValidLoader,
};

use super::components::{ArcaneComponents, ArcaneLoop, Processor};
use super::log::{MetricRecord, MetricsLog};
use super::metrics::StepStats;
use super::plot::{plot_runs, PlotRun};
use super::step::LmOutput;
use crate::generation::{generate, GenerateConfig, SamplingConfig};
use crate::model::Gpt;

/// Where in the run an evaluation happens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EvalPoint {
    /// Steps completed.
    pub step: usize,
    /// Tokens trained on.
    pub tokens: u64,
    /// The dashboard's epoch (stretch of `eval_every` steps) and their number.
    pub epoch: usize,
    /// Number of dashboard epochs in the run.
    pub num_epochs: usize,
}

/// What an evaluation measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct EvalFigures {
    /// Mean validation loss.
    pub val_loss: f64,
    /// The text sample, prompt included.
    pub sample: Option<String>,
    /// HellaSwag `(n, acc_norm)`, when it ran.
    pub hellaswag: Option<(usize, f64)>,
}

impl<B: AutodiffBackend> ArcaneLoop<B> {
    /// Validation loss, a text sample, the optional extra evaluation, and the loss picture.
    pub(crate) fn evaluate(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        loader: &ValidLoader<ArcaneComponents<B>>,
        log: &MetricsLog,
        at: EvalPoint,
    ) -> crate::Result<EvalFigures> {
        let model = learner.model().valid();
        let (val_loss, token_metrics) = self.validation_loss(&model, processor, loader, at);
        log.append(&MetricRecord::Val {
            step: at.step,
            tokens: at.tokens,
            loss: val_loss,
        })?;
        if let Some([accuracy, entropy]) = token_metrics {
            // TRL's names of the held-out figures.
            let values = [
                ("eval_loss", val_loss),
                ("eval_mean_token_accuracy", accuracy),
                ("eval_entropy", entropy),
            ];
            log.append(&MetricRecord::Sft {
                step: at.step,
                values: values.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            })?;
        }
        let sample = self.sample(&model, at.step)?;
        if let Some(text) = &sample {
            log.append(&MetricRecord::Sample {
                step: at.step,
                text: text.clone(),
            })?;
        }
        let hellaswag = self.extra_eval(&model, processor, log, at)?;
        self.suite_eval(&model, log, at)?;
        let figures = EvalFigures {
            val_loss,
            sample,
            hellaswag,
        };
        if self.plain {
            self.print_eval(at.step, &figures);
        }
        processor.process_train(LearnerEvent::EndEpoch(at.epoch));
        processor.process_valid(LearnerEvent::EndEpoch(at.epoch));
        self.draw(log)?;
        Ok(figures)
    }

    /// The extra evaluation alone, between validations (it decides itself whether it is due),
    /// with its log line and the loss picture when it ran.
    pub(crate) fn evaluate_extra(
        &self,
        learner: &Learner<ArcaneComponents<B>>,
        processor: &mut Processor<B>,
        log: &MetricsLog,
        at: EvalPoint,
    ) -> crate::Result<()> {
        let model = learner.model().valid();
        let hellaswag = self.extra_eval(&model, processor, log, at)?;
        let suite = self.suite_eval(&model, log, at)?;
        if hellaswag.is_none() && !suite {
            return Ok(());
        }
        if let (true, Some((n, acc_norm))) = (self.plain, hellaswag) {
            let max = self.config.max_steps;
            println!(
                "step {:>6}/{max} | HellaSwag acc_norm {acc_norm:.4} on {n} examples",
                at.step
            );
        }
        self.draw(log)
    }

    /// The loss picture of the run so far.
    fn draw(&self, log: &MetricsLog) -> crate::Result<()> {
        let records = super::log::read_metrics(log.path())?;
        plot_runs(
            &[PlotRun {
                name: "run".into(),
                records: &records,
            }],
            &self.run_dir.join("loss"),
        )
    }

    /// Mean loss over the validation tokens, each batch shown on the dashboard; with a masked
    /// loss (supervised fine-tuning) the mean over the loss tokens, and their mean token
    /// accuracy and entropy.
    fn validation_loss(
        &self,
        model: &Gpt<B::InnerBackend>,
        processor: &mut Processor<B>,
        loader: &ValidLoader<ArcaneComponents<B>>,
        at: EvalPoint,
    ) -> (f64, Option<[f64; 2]>) {
        let (mut sum, mut count) = (0.0, 0usize);
        let mut token_sums: Option<[f64; 2]> = None;
        let mut batches = loader.iter();
        let mut index = 0;
        while let Some(batch) = batches.next() {
            index += 1;
            let output = InferenceStep::step(model, batch);
            let mut n = output.stats.tokens;
            if let Some((metrics, loss_tokens)) = &output.token_metrics {
                n = *loss_tokens;
                let m: Vec<f64> = metrics
                    .clone()
                    .into_data()
                    .convert::<f64>()
                    .to_vec()
                    .expect("f64");
                let s = token_sums.get_or_insert([0.0; 2]);
                (s[0], s[1]) = (s[0] + m[0], s[1] + m[1]);
            }
            let loss = output.loss.clone().into_scalar().elem::<f64>();
            sum += loss * n as f64;
            count += n;
            processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                output,
                batches.progress(),
                Progress::new(at.epoch, at.num_epochs),
                Some(index),
                None,
            )));
        }
        let n = count.max(1) as f64;
        (sum / n, token_sums.map(|[a, e]| [a / n, e / n]))
    }

    /// A sample continuing `sample_prompt` (top-k 50, seeded by the step), if the prompt fits.
    fn sample(&self, model: &Gpt<B::InnerBackend>, step: usize) -> crate::Result<Option<String>> {
        let c = &self.config;
        let tokenizer = &self.tokenizer;
        let prompt = tokenizer.encode_prompt(&c.sample_prompt)?;
        if prompt.is_empty()
            || c.sample_tokens == 0
            || model.check_tokens(&prompt).is_err()
            || prompt.len() >= c.model.max_seq_len
        {
            return Ok(None);
        }
        // `..default()` keeps this working when GenerateConfig gains fields.
        #[allow(clippy::needless_update)]
        let config = GenerateConfig {
            max_new_tokens: c
                .sample_tokens
                .min(c.model.max_seq_len.saturating_sub(prompt.len()))
                .max(1),
            sampling: SamplingConfig {
                temperature: 1.0,
                top_k: Some(50),
                top_p: None,
                seed: c.seed.wrapping_add(step as u64),
            },
            vocab_limit: Some(c.model.vocab_size.min(tokenizer.vocab_size())),
            stop_tokens: tokenizer.eos().into_iter().collect(),
            shapes: self.shapes,
            ..GenerateConfig::default()
        };
        let generated = generate(model, &prompt, &config, |_| {})?;
        Ok(Some(format!(
            "{}{}",
            c.sample_prompt,
            tokenizer.decode(&generated.ids)?
        )))
    }

    /// The extra evaluation (HellaSwag), logged and shown on the dashboard when it ran.
    fn extra_eval(
        &self,
        model: &Gpt<B::InnerBackend>,
        processor: &mut Processor<B>,
        log: &MetricsLog,
        at: EvalPoint,
    ) -> crate::Result<Option<(usize, f64)>> {
        let Some(hook) = &self.eval_hook else {
            return Ok(None);
        };
        let Some((n, acc, acc_norm)) = hook(model, at.step)? else {
            return Ok(None);
        };
        log.append(&MetricRecord::Hellaswag {
            step: at.step,
            tokens: at.tokens,
            n,
            acc,
            acc_norm,
        })?;
        let item = LmOutput {
            loss: Tensor::from_floats([0.0], &model.device()),
            stats: StepStats {
                hellaswag: Some(acc_norm),
                ..StepStats::default()
            },
            token_metrics: None,
        };
        processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
            item,
            Progress::new(1, 1),
            Progress::new(at.epoch, at.num_epochs),
            None,
            None,
        )));
        Ok(Some((n, acc_norm)))
    }

    /// The lm-eval suite, when it is due: logged, and one plain line. Whether it ran.
    fn suite_eval(
        &self,
        model: &Gpt<B::InnerBackend>,
        log: &MetricsLog,
        at: EvalPoint,
    ) -> crate::Result<bool> {
        let Some(hook) = &self.suite_hook else {
            return Ok(false);
        };
        let Some((n, values)) = hook(model, at.step)? else {
            return Ok(false);
        };
        if self.plain {
            let accs: Vec<String> = values
                .iter()
                .filter_map(|(k, v)| Some(format!("{} {v:.3}", k.strip_suffix("/acc")?)))
                .collect();
            let core = values
                .get("core_subset")
                .map_or(String::new(), |c| format!("CORE subset {c:.4}; "));
            println!(
                "step {:>6}/{} | eval suite (≤{n} docs each): {core}acc {}",
                at.step,
                self.config.max_steps,
                accs.join(", ")
            );
        }
        log.append(&MetricRecord::EvalSuite {
            step: at.step,
            tokens: at.tokens,
            n,
            values,
        })?;
        Ok(true)
    }

    /// The plain log lines of an evaluation.
    fn print_eval(&self, step: usize, figures: &EvalFigures) {
        let max = self.config.max_steps;
        println!("step {step:>6}/{max} | val loss {:.4}", figures.val_loss);
        if let Some((n, acc_norm)) = figures.hellaswag {
            println!("step {step:>6}/{max} | HellaSwag acc_norm {acc_norm:.4} on {n} examples");
        }
        if let Some(sample) = &figures.sample {
            println!(
                "step {step:>6}/{max} | sample: {}",
                sample.replace('\n', " ")
            );
        }
    }
}
