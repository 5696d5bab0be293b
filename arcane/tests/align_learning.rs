//! Alignment learns, on a synthetic task with a tiny model (vocabulary 256): the reward model
//! and DPO rank held-out pairs at 95% or better, and PPO and RLOO raise a programmatic reward
//! well above where it started.
//!
//! The task: completions of "good" tokens (ids 10..40) are preferred to completions of "bad"
//! tokens (40..70); RL is rewarded for the fraction of response tokens below 32.

mod common;

use arcane::align::{
    evaluate_dpo, evaluate_reward, evaluate_reward_model, reference_logps, train_dpo,
    train_reward_model, AlignLog, DpoConfig, FnReward, OptimSettings, RewardConfig, RewardEval,
    RewardEvalConfig, RlConfig, RlTrainer, TokenPair,
};
use arcane::{Gpt, ModelConfig};
use burn::module::AutodiffModule;
use burn::prelude::*;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type AD = TestAutodiff;

fn tiny(seed: u64) -> Gpt<AD> {
    let device = Default::default();
    <AD as Backend>::seed(&device, seed);
    ModelConfig::tiny().init::<AD>(&device).unwrap()
}

fn synthetic_pairs(n: usize, seed: u64) -> Vec<TokenPair> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tokens = |lo: u32, len: usize| -> Vec<u32> {
        (0..len).map(|_| rng.random_range(lo..lo + 30)).collect()
    };
    (0..n)
        .map(|i| TokenPair {
            prompt: tokens(100, 2),
            chosen: tokens(10, 4 + i % 4),
            rejected: tokens(40, 4 + (i + 1) % 4),
            margin: 0.0,
        })
        .collect()
}

fn optim(lr: f64) -> OptimSettings {
    OptimSettings {
        lr,
        ..OptimSettings::default()
    }
}

#[test]
fn the_reward_model_learns_the_preference() {
    let (train, test) = (synthetic_pairs(256, 1), synthetic_pairs(128, 2));
    let config = RewardConfig {
        epochs: 2,
        batch_pairs: 16,
        optim: optim(1e-3),
        ..RewardConfig::default()
    };
    let (model, held_out) =
        train_reward_model(tiny(1), &train, &test, &config, &mut AlignLog::silent()).unwrap();
    let held_out = held_out.unwrap();
    eprintln!("reward model held-out {held_out:?}");
    assert!(held_out.accuracy >= 0.95, "held-out accuracy {held_out:?}");
    // The same figure, recomputed from the trained model.
    let again = evaluate_reward_model(&model.valid(), &test, 32, false);
    assert_eq!(again.accuracy, held_out.accuracy);
}

#[test]
fn dpo_learns_the_preference() {
    let (train, test) = (synthetic_pairs(256, 3), synthetic_pairs(128, 4));
    let config = DpoConfig {
        epochs: 2,
        batch_pairs: 16,
        optim: optim(1e-3),
        ..DpoConfig::default()
    };
    let base = tiny(2).valid();
    let refs = reference_logps(&base, &test, 16, false);
    let before = evaluate_dpo(&base, &test, &refs, &config);
    let (policy, held_out) =
        train_dpo(tiny(2), &train, &test, &config, &mut AlignLog::silent()).unwrap();
    let held_out = held_out.unwrap();
    eprintln!("DPO held-out {held_out:?}, loss before {}", before.loss);
    assert!(held_out.accuracies >= 0.95, "held-out {held_out:?}");
    assert!(
        held_out.loss < before.loss - 0.2,
        "loss {} -> {}",
        before.loss,
        held_out.loss
    );
    let again = evaluate_dpo(&policy.valid(), &test, &refs, &config);
    assert!((again.accuracies - held_out.accuracies).abs() < 1e-12);
}

/// Fraction of response tokens below 32 (an eighth of the vocabulary).
fn low_tokens(_: &[u32], r: &[u32]) -> f32 {
    r.iter().filter(|&&t| t < 32).count() as f32 / r.len().max(1) as f32
}

fn measure(t: &RlTrainer<AD>, prompts: &[Vec<u32>]) -> RewardEval {
    let eval = RewardEvalConfig {
        samples: 64,
        ..RewardEvalConfig::default()
    };
    let policy = t.model().valid().policy;
    let mut reward = FnReward(low_tokens);
    evaluate_reward(
        &policy,
        t.reference(),
        prompts,
        &mut reward,
        t.rollout_config(),
        &eval,
    )
    .unwrap()
}

fn rl_learns(config: RlConfig) -> (f64, f64) {
    let prompts: Vec<Vec<u32>> = (0..16u32)
        .map(|i| vec![100 + i, 120 + i % 3, 140])
        .collect();
    let mut trainer = RlTrainer::new(tiny(5), prompts.clone(), config).unwrap();
    let mut reward = FnReward(low_tokens);
    let before = measure(&trainer, &prompts);
    trainer.normalize_reward(&mut reward).unwrap();
    for _ in 0..trainer.config().iterations {
        trainer.step(&mut reward).unwrap();
    }
    let after = measure(&trainer, &prompts);
    assert!(
        after.kl_mean > 0.0 && after.kl_mean < 30.0,
        "KL {}",
        after.kl_mean
    );
    (before.reward_mean, after.reward_mean)
}

/// Trains `algo` (PPO's or RLOO's defaults) for 12 iterations of 32 rollouts and asserts the
/// programmatic reward rose by more than 0.25.
fn assert_raises_the_reward(name: &str, algo: RlConfig) {
    let config = RlConfig {
        iterations: 12,
        rollouts: 32,
        minibatch: 8,
        response_tokens: 8,
        optim: optim(3e-3),
        ..algo
    };
    let (before, after) = rl_learns(config);
    eprintln!("{name} reward {before:.3} -> {after:.3}");
    assert!(
        after > before + 0.25,
        "{name} reward {before:.3} -> {after:.3}"
    );
}

#[test]
fn ppo_raises_a_programmatic_reward() {
    assert_raises_the_reward("PPO", RlConfig::ppo());
}

#[test]
fn rloo_raises_a_programmatic_reward() {
    assert_raises_the_reward("RLOO", RlConfig::rloo());
}
