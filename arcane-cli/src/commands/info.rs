//! `arcane-cli info`: what a config costs, before anything is allocated.

use anyhow::Result;
use serde_json::json;

use crate::cli::InfoArgs;
use crate::model_arg::resolve_config;

const GIB: f64 = (1u64 << 30) as f64;

/// Prints parameters, FLOPs per token and memory estimates of a config.
pub fn run(args: InfoArgs) -> Result<()> {
    let (name, c) = resolve_config(&args.config)?;
    let t = args.seq_len.unwrap_or(c.max_seq_len);
    let n = c.num_params();
    let non_embedding = n - c.vocab_size * c.d_model - c.position_params();
    let flops = c.flops_per_token(t);
    // f32 weights; training adds a gradient and AdamW's two moments per parameter.
    let weights_bytes = 4 * n;
    let train_state_bytes = 16 * n;
    let kv_token = c.kv_cache_bytes_per_token();
    let info = json!({
        "config": name,
        "params": n,
        "non_embedding_params": non_embedding,
        "seq_len": t,
        "train_flops_per_token": flops,
        "forward_flops_per_token": flops / 3.0,
        "weights_bytes_f32": weights_bytes,
        "train_state_bytes": train_state_bytes,
        "kv_cache_bytes_per_token": kv_token,
        "kv_cache_bytes_full_context": kv_token * c.max_seq_len,
        "model": c,
    });
    if args.json {
        println!("{info}");
        return Ok(());
    }
    println!("config              {name}");
    println!(
        "architecture        {} layers, d_model {}, {} heads ({} kv), head dim {}, MLP {:?} {}",
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.kv_heads(),
        c.head_dim(),
        c.mlp,
        c.hidden_size()
    );
    println!(
        "                    positions {:?}, norm {:?}, vocab {}, context {}, tied head {}",
        c.positions, c.norm, c.vocab_size, c.max_seq_len, c.tie_embeddings
    );
    println!(
        "parameters          {n} ({:.1}M; {:.1}M without embeddings)",
        n as f64 / 1e6,
        non_embedding as f64 / 1e6
    );
    println!(
        "FLOPs per token     {:.3} GFLOP training (6N + 12·L·d·T at T={t}), {:.3} GFLOP forward",
        flops / 1e9,
        flops / 3e9
    );
    println!("weights (f32)       {:.2} GiB", weights_bytes as f64 / GIB);
    println!(
        "training state      {:.2} GiB (weights, gradients, AdamW moments; activations extra)",
        train_state_bytes as f64 / GIB
    );
    println!(
        "KV cache            {:.1} KiB per token, {:.1} MiB for the full context (batch 1, f32)",
        kv_token as f64 / 1024.0,
        (kv_token * c.max_seq_len) as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
