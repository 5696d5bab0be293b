//! Alignment, exactly: DPO's loss at initialisation is ln 2, PPO's first ratio is 1 and its
//! KL 0, the clipped losses, the KL controller, GAE, whitening and RLOO against hand-worked
//! values, and padding that never changes a sequence's log-probability or reward.

mod common;

use arcane::align::{
    dpo_loss, gae, policy_loss, reference_logps, reward_loss, rloo_advantages, sequence_logprobs,
    token_rewards, train_dpo, value_loss, whiten, AdaptiveKl, AlignLog, DpoConfig, DpoLossKind,
    FnReward, Lexicon, OptimSettings, RewardModel, RlConfig, RlTrainer, SeqBatch, Sequence,
    TokenPair, Updater,
};
use arcane::lora::{LoraConfig, LoraTarget};
use arcane::training::MetricRecord;
use arcane::{Gpt, ModelConfig};
use burn::prelude::*;
use common::*;

type B = TestBackend;
type AD = TestAutodiff;

const LN2: f64 = std::f64::consts::LN_2;

fn tiny<Bk: Backend>(seed: u64) -> Gpt<Bk> {
    let device = Default::default();
    Bk::seed(&device, seed);
    ModelConfig::tiny().init::<Bk>(&device).unwrap()
}

fn t1(v: &[f32]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
}

fn t2(rows: usize, v: &[f32]) -> Tensor<B, 2> {
    let cols = v.len() / rows;
    Tensor::from_data(
        TensorData::new(v.to_vec(), [rows, cols]),
        &Default::default(),
    )
}

fn scalar(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} != {b} (tolerance {tol})");
}

fn pairs(n: usize) -> Vec<TokenPair> {
    (0..n as u32)
        .map(|i| TokenPair {
            prompt: vec![100 + i % 5, 101],
            chosen: (0..4 + i % 3).map(|j| 10 + (i * 7 + j) % 30).collect(),
            rejected: (0..3 + i % 4).map(|j| 40 + (i * 5 + j) % 30).collect(),
            margin: 0.0,
        })
        .collect()
}

#[test]
fn dpo_loss_at_initialisation_is_ln_2() {
    // Policy = reference: every log-ratio is 0, so the sigmoid loss is -log σ(0) = ln 2.
    let model = tiny::<B>(1);
    let data = pairs(6);
    let refs = reference_logps(&model, &data, 4, false);
    let w: Vec<f32> = refs.iter().map(|r| r.chosen).collect();
    let l: Vec<f32> = refs.iter().map(|r| r.rejected).collect();
    let loss = dpo_loss(
        t1(&w),
        t1(&l),
        t1(&w),
        t1(&l),
        0.1,
        DpoLossKind::Sigmoid,
        0.0,
    );
    close(scalar(loss), LN2, 1e-7);
    // The training loop's first step, full and LoRA, sees the same: its logged loss is ln 2.
    for lora in [
        None,
        Some(LoraConfig {
            rank: 2,
            ..LoraConfig::default()
        }),
    ] {
        let mut first = Vec::new();
        let mut log = AlignLog::new(None, |r: &MetricRecord| {
            if let MetricRecord::Align { values, .. } = r {
                first.push((values["loss"], values["rewards/margins"]));
            }
        });
        let config = DpoConfig {
            max_steps: Some(1),
            batch_pairs: 6,
            lora,
            ..DpoConfig::default()
        };
        train_dpo(tiny::<AD>(1), &data, &[], &config, &mut log).unwrap();
        drop(log);
        close(first[0].0, LN2, 1e-6);
        close(first[0].1, 0.0, 1e-6);
    }
}

#[test]
fn dpo_variants_match_their_formulas() {
    // h = (-1 - -1.5) - (-2 - -1.5) = 1.
    let (w, l, rw, rl) = (t1(&[-1.0]), t1(&[-2.0]), t1(&[-1.5]), t1(&[-1.5]));
    let loss = |kind, eps| {
        scalar(dpo_loss(
            w.clone(),
            l.clone(),
            rw.clone(),
            rl.clone(),
            0.1,
            kind,
            eps,
        ))
    };
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    close(loss(DpoLossKind::Sigmoid, 0.0), softplus(-0.1), 1e-6);
    close(
        loss(DpoLossKind::Sigmoid, 0.2),
        0.8 * softplus(-0.1) + 0.2 * softplus(0.1),
        1e-6,
    );
    close(
        loss(DpoLossKind::Ipo, 0.0),
        (1.0f64 - 1.0 / 0.2).powi(2),
        1e-5,
    );
    close(loss(DpoLossKind::Hinge, 0.0), 0.9, 1e-6);
}

#[test]
fn reward_loss_margin_and_centring() {
    close(
        scalar(reward_loss(t1(&[0.3, -1.0]), t1(&[0.3, -1.0]), None, 0.0)),
        LN2,
        1e-6,
    );
    // r_w - r_l - m = 0 again, with a margin of 1.
    close(
        scalar(reward_loss(t1(&[2.0]), t1(&[1.0]), Some(t1(&[1.0])), 0.0)),
        LN2,
        1e-6,
    );
    // Centring adds c · mean (r_w + r_l)² = 0.01 · 4.
    close(
        scalar(reward_loss(t1(&[1.0]), t1(&[1.0]), None, 0.01)),
        LN2 + 0.04,
        1e-6,
    );
}

#[test]
fn clipped_policy_and_value_losses_by_hand() {
    let ln = |x: f64| x.ln() as f32;
    // Ratios 1.5, 0.5, 1.5, 0.5 with advantages +1, +1, -1, -1; a fifth token is masked out.
    let logp = t2(1, &[ln(1.5), ln(0.5), ln(1.5), ln(0.5), 5.0]);
    let old = t2(1, &[0.0; 5]);
    let adv = t2(1, &[1.0, 1.0, -1.0, -1.0, 100.0]);
    let mask = t2(1, &[1.0, 1.0, 1.0, 1.0, 0.0]);
    let (loss, s) = policy_loss(logp, old, adv, mask.clone(), 0.2);
    // max(-Aρ, -A clip(ρ)): -1.2 (clipped), -0.5, 1.5, 0.8 (clipped).
    close(scalar(loss), (-1.2 - 0.5 + 1.5 + 0.8) / 4.0, 1e-6);
    close(s.clipfrac, 0.5, 1e-9);
    close(s.ratio_mean, 1.0, 1e-6);
    let l2 = 1.5f64.ln().powi(2) + 0.5f64.ln().powi(2);
    close(s.approxkl, 0.5 * 2.0 * l2 / 4.0, 1e-6);
    // Values 0.5, 0.5, -0.1 around old values 0 (clip 0.2) against returns 1, 0, 1:
    // max((v-R)², (v_c-R)²) = 0.64 (clipped), 0.25, 1.21.
    let (vloss, vs) = value_loss(
        t2(1, &[0.5, 0.5, -0.1]),
        t2(1, &[0.0, 0.0, 0.0]),
        t2(1, &[1.0, 0.0, 1.0]),
        t2(1, &[1.0, 1.0, 1.0]),
        0.2,
    );
    close(scalar(vloss), 0.5 * (0.64 + 0.25 + 1.21) / 3.0, 1e-6);
    close(vs.clipfrac, 1.0 / 3.0, 1e-6);
}

#[test]
fn the_adaptive_kl_controller_by_hand() {
    let kl = |value: f64, n: usize| {
        let mut c = AdaptiveKl {
            value: 0.2,
            target: Some(6.0),
            horizon: 1000.0,
        };
        c.update(value, n);
        c.value
    };
    close(kl(9.0, 32), 0.2 * (1.0 + 0.2 * 32.0 / 1000.0), 1e-15); // error clipped at +0.2
    close(kl(3.0, 32), 0.2 * (1.0 - 0.2 * 32.0 / 1000.0), 1e-15); // and at -0.2
    close(kl(6.6, 32), 0.2 * (1.0 + 0.1 * 32.0 / 1000.0), 1e-15);
    let mut fixed = AdaptiveKl {
        value: 0.2,
        target: None,
        horizon: 1000.0,
    };
    fixed.update(50.0, 32);
    assert_eq!(fixed.value, 0.2);
}

#[test]
fn gae_rewards_and_whitening_by_hand() {
    let (adv, ret) = gae(&[0.0, 0.0, 1.0], &[0.5, 0.5, 0.5], 1.0, 0.95);
    // δ = [0, 0, 0.5]; A_2 = 0.5, A_1 = 0.95 · 0.5, A_0 = 0.95² · 0.5.
    for (a, e) in adv.iter().zip([0.45125, 0.475, 0.5]) {
        close(*a, e, 1e-12);
    }
    for (r, e) in ret.iter().zip([0.95125, 0.975, 1.0]) {
        close(*r, e, 1e-12);
    }
    // γ = 0.5, λ = 1: δ_1 = 2 - 1 = 1, δ_0 = 0 + 0.5 · 1 - 0 = 0.5; A_0 = 0.5 + 0.5 · 1.
    let (adv, _) = gae(&[0.0, 2.0], &[0.0, 1.0], 0.5, 1.0);
    close(adv[0], 1.0, 1e-12);
    close(adv[1], 1.0, 1e-12);
    let r = token_rewards(&[0.1, -0.2, 0.3], 0.5, 2.0);
    for (a, e) in r.iter().zip([-0.05, 0.1, 1.85]) {
        close(*a, e, 1e-12);
    }
    let w = whiten(&[1.0, 2.0, 3.0, 4.0], true);
    let sd = (5.0f64 / 3.0 + 1e-8).sqrt();
    for (a, x) in w.iter().zip([1.0, 2.0, 3.0, 4.0]) {
        close(*a, (x - 2.5) / sd, 1e-12);
    }
    close(
        whiten(&[1.0, 2.0, 3.0, 4.0], false)[0],
        -1.5 / sd + 2.5,
        1e-12,
    );
}

#[test]
fn rloo_advantages_by_hand() {
    let a = rloo_advantages(&[1.0, 2.0, 3.0, 6.0, 5.0, 1.0], 2);
    for (x, e) in a.iter().zip([-1.0, 1.0, -3.0, 3.0, 4.0, -4.0]) {
        close(*x, e, 1e-12);
    }
    let a = rloo_advantages(&[1.0, 2.0, 3.0, 6.0], 4);
    for (x, e) in a.iter().zip([1.0 - 11.0 / 3.0, 2.0 - 10.0 / 3.0, 0.0, 4.0]) {
        close(*x, e, 1e-12);
    }
}

fn rl_config(lora: Option<LoraConfig>) -> RlConfig {
    RlConfig {
        iterations: 1,
        rollouts: 8,
        minibatch: 4,
        response_tokens: 6,
        normalize_reward: false,
        lora,
        ..RlConfig::ppo()
    }
}

#[test]
fn ppo_ratio_is_one_and_kl_zero_on_the_first_minibatch() {
    let prompts: Vec<Vec<u32>> = (0..5).map(|i| vec![3 + i, 9, 27]).collect();
    let lora = LoraConfig {
        rank: 2,
        targets: LoraTarget::ALL[..5].to_vec(),
        ..LoraConfig::default()
    };
    for config in [rl_config(None), rl_config(Some(lora))] {
        let mut trainer = RlTrainer::new(tiny::<AD>(3), prompts.clone(), config).unwrap();
        let mut reward =
            FnReward(|_: &[u32], r: &[u32]| r.iter().filter(|&&t| t < 64).count() as f32);
        let (stats, exp) = trainer.step(&mut reward).unwrap();
        // Policy = reference before any update: every token's log-ratio is exactly 0.
        assert!(exp.kl().iter().all(|&k| k == 0.0), "{:?}", exp.kl());
        close(stats.kl, 0.0, 0.0);
        // Old log-probs come from the training code path: ratio 1, no clipping.
        let first = stats.first_minibatch;
        close(first.ratio_mean, 1.0, 1e-5);
        assert!(first.approxkl < 1e-10 && first.clipfrac == 0.0, "{first:?}");
        // Values start at 0 (zero head), so returns equal the score-to-go.
        assert!(exp.values.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn padding_never_changes_a_log_prob_or_a_reward() {
    let model = tiny::<B>(4);
    let device = Default::default();
    let short = Sequence::new(0, &[5, 6], &[7, 8, 9]);
    let long = Sequence::new(0, &[11], &(20..40).collect::<Vec<u32>>());
    let alone = SeqBatch::<B>::new(std::slice::from_ref(&short), 0, &device);
    let padded = SeqBatch::<B>::new(&[long.clone(), short.clone()], 255, &device);
    let a = values(sequence_logprobs(&model, &alone, 256, false));
    let p = values(sequence_logprobs(&model, &padded, 256, false));
    close(f64::from(a[0]), f64::from(p[1]), 1e-5);
    let rm = RewardModel::new(model);
    let ra = values(rm.forward(&alone));
    let rp = values(rm.forward(&padded));
    close(f64::from(ra[0]), f64::from(rp[1]), 1e-5);
    // Whatever the padding holds.
    let other = SeqBatch::<B>::new(&[long, short], 3, &device);
    close(
        f64::from(values(rm.forward(&other))[1]),
        f64::from(ra[0]),
        1e-5,
    );
}

#[test]
fn the_lexicon_sums_valences_of_words() {
    let lex = Lexicon::vader().unwrap();
    // 7,520 lines, 14 tokens listed twice (the later line wins, as in VADER's own dict).
    assert_eq!(lex.len(), 7506);
    assert_eq!(
        (lex.valence("good"), lex.valence("bad")),
        (Some(1.9), Some(-2.5))
    );
    // Case and punctuation do not matter; unknown words count 0.
    close(lex.sum("GOOD food, bad... service!"), 1.9 - 2.5, 1e-12);
    let s = 1.9 + 3.1;
    close(
        lex.score("good and great"),
        s / (s * s + 15.0f64).sqrt(),
        1e-12,
    );
    close(lex.score("a table"), 0.0, 0.0);
}

#[test]
fn non_finite_losses_and_rewards_stop_the_run() {
    // The guard of pre-training: a NaN loss is not applied.
    let model = tiny::<AD>(6);
    let mut updater = Updater::new(&OptimSettings::default(), 10, &model);
    let loss = model
        .forward(tokens(&[1, 2, 3], &Default::default()))
        .mean()
        * f64::NAN;
    let err = updater.step(model, loss).unwrap_err().to_string();
    assert!(
        err.contains("step 1: the loss is NaN") && err.contains("not applied"),
        "{err}"
    );
    assert_eq!(updater.steps(), 0);
    // A NaN reward stops PPO before it reaches an advantage.
    let prompts = vec![vec![3, 9, 27]];
    let mut trainer = RlTrainer::new(tiny::<AD>(6), prompts, rl_config(None)).unwrap();
    let mut nan = FnReward(|_: &[u32], _: &[u32]| f32::NAN);
    let err = trainer.step(&mut nan).unwrap_err().to_string();
    assert!(err.contains("the reward of sample 0 is NaN"), "{err}");
    assert_eq!(trainer.iteration(), 0);
}
