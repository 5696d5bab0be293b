//! `arcane-cli plot`: several runs' loss curves on one chart.

use anyhow::{Context, Result};
use arcane::training::{plot_runs, read_metrics, PlotRun, METRICS_FILE};

use crate::cli::PlotArgs;

/// Reads each run's metrics.jsonl and draws them together.
pub fn run(args: PlotArgs) -> Result<()> {
    let mut all = Vec::new();
    for dir in &args.runs {
        let path = dir.join(METRICS_FILE);
        let records = read_metrics(&path).with_context(|| {
            format!("{} is not a run folder with {METRICS_FILE}", dir.display())
        })?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("run")
            .to_string();
        all.push((name, records));
    }
    let stem = args.out.unwrap_or_else(|| match args.runs.as_slice() {
        [one] => one.join("loss"),
        _ => "loss-comparison".into(),
    });
    let runs: Vec<PlotRun> = all
        .iter()
        .map(|(name, records)| PlotRun {
            name: name.clone(),
            records,
        })
        .collect();
    plot_runs(&runs, &stem)?;
    println!(
        "wrote {} and {}",
        stem.with_extension("png").display(),
        stem.with_extension("svg").display()
    );
    Ok(())
}
