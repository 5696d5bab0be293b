//! Loss curves as pictures (`loss.png`, `loss.svg`): training and validation loss against
//! steps and against tokens, and HellaSwag accuracy when the run measured it; several runs can
//! share one chart (`arcane-cli plot`).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::log::MetricRecord;
use crate::error::{ArcaneError, Result};

/// One run's records and its legend name.
pub struct PlotRun<'a> {
    /// Legend label.
    pub name: String,
    /// Its `metrics.jsonl` records.
    pub records: &'a [MetricRecord],
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

static FONT: Once = Once::new();

/// Registers the bundled font (DejaVu Sans, ASCII subset) as "sans-serif", once per process.
fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
        // A failure only costs the labels; the curves are still drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// Draws the runs' curves to `stem.png` and `stem.svg`.
pub fn plot_runs(runs: &[PlotRun], stem: &Path) -> Result<()> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |path: &Path, e: String| {
        ArcaneError::format(path, format!("cannot draw the loss picture: {e}"))
    };
    let panels = 2 + has(runs, is_hellaswag) as usize + has(runs, is_suite) as usize;
    let size = (560 * panels as u32, 440);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(&root, runs, panels).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    draw(&root, runs, panels).map_err(|e| fail(&svg, e))?;
    root.present().map_err(|e| fail(&svg, e.to_string()))
}

fn has(runs: &[PlotRun], kind: fn(&MetricRecord) -> bool) -> bool {
    runs.iter().any(|r| r.records.iter().any(kind))
}

fn is_hellaswag(m: &MetricRecord) -> bool {
    matches!(m, MetricRecord::Hellaswag { .. })
}

fn is_suite(m: &MetricRecord) -> bool {
    matches!(m, MetricRecord::EvalSuite { values, .. } if values.contains_key("core_subset"))
}

/// Training loss, validation loss, HellaSwag and CORE-subset points of a run, x as steps or
/// tokens.
struct Series {
    train: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
    hellaswag: Vec<(f64, f64)>,
    core: Vec<(f64, f64)>,
}

fn series(records: &[MetricRecord], by_tokens: bool) -> Series {
    let x = |step: usize, tokens: u64| {
        if by_tokens {
            tokens as f64
        } else {
            step as f64
        }
    };
    let mut s = Series {
        train: vec![],
        val: vec![],
        hellaswag: vec![],
        core: vec![],
    };
    for r in records {
        match r {
            MetricRecord::Train {
                step, tokens, loss, ..
            } if loss.is_finite() => s.train.push((x(*step, *tokens), *loss)),
            MetricRecord::Val { step, tokens, loss } if loss.is_finite() => {
                s.val.push((x(*step, *tokens), *loss))
            }
            MetricRecord::Hellaswag {
                step,
                tokens,
                acc_norm,
                ..
            } => s.hellaswag.push((x(*step, *tokens), *acc_norm)),
            MetricRecord::EvalSuite {
                step,
                tokens,
                values,
                ..
            } => {
                if let Some(core) = values.get("core_subset") {
                    s.core.push((x(*step, *tokens), *core));
                }
            }
            _ => {}
        }
    }
    s
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[PlotRun],
    panels: usize,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels));
    draw_loss(&areas[0], runs, false)?;
    draw_loss(&areas[1], runs, true)?;
    let mut next = 2;
    if has(runs, is_hellaswag) {
        let curve = Curve {
            caption: "HellaSwag acc_norm vs step",
            y_desc: "acc_norm",
            y_range: 0.2..0.6,
            chance: 0.25, // four endings
            points: |s| &s.hellaswag,
        };
        draw_points(&areas[next], runs, &curve)?;
        next += 1;
    }
    if has(runs, is_suite) {
        let curve = Curve {
            caption: "CORE subset (lm-eval tasks) vs step",
            y_desc: "mean centred accuracy",
            y_range: -0.1..0.5,
            chance: 0.0,
            points: |s| &s.core,
        };
        draw_points(&areas[next], runs, &curve)?;
    }
    Ok(())
}

/// Train and validation loss of every run against steps or tokens.
fn draw_loss<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[PlotRun],
    by_tokens: bool,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let all: Vec<Series> = runs.iter().map(|r| series(r.records, by_tokens)).collect();
    let points = all.iter().flat_map(|s| s.train.iter().chain(&s.val));
    let (x_max, y_min, y_max) = points
        .fold((1.0f64, f64::MAX, f64::MIN), |(xm, lo, hi), &(x, y)| {
            (xm.max(x), lo.min(y), hi.max(y))
        });
    let (y_min, y_max) = if y_min > y_max {
        (0.0, 1.0)
    } else {
        (y_min, y_max)
    };
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let x_desc = if by_tokens { "tokens" } else { "step" };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("loss vs {x_desc}"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("loss (nats/token)")
        .x_label_formatter(&|v| human(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, (run, s)) in runs.iter().zip(&all).enumerate() {
        let color = COLORS[k % COLORS.len()];
        let prefix = if runs.len() > 1 {
            format!("{} ", run.name)
        } else {
            String::new()
        };
        chart
            .draw_series(LineSeries::new(
                s.train.iter().copied(),
                color.mix(0.45).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{prefix}train"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.mix(0.45)));
        chart
            .draw_series(
                LineSeries::new(s.val.iter().copied(), color.stroke_width(3)).point_size(3),
            )
            .map_err(|e| e.to_string())?
            .label(format!("{prefix}val"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A panel of one evaluation figure against steps.
struct Curve {
    caption: &'static str,
    y_desc: &'static str,
    y_range: std::ops::Range<f64>,
    /// The figure of random guessing, drawn as a grey line.
    chance: f64,
    points: fn(&Series) -> &Vec<(f64, f64)>,
}

/// `curve` of every run against steps, with the chance level.
fn draw_points<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[PlotRun],
    curve: &Curve,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let all: Vec<Series> = runs.iter().map(|r| series(r.records, false)).collect();
    let x_max = all
        .iter()
        .flat_map(|s| (curve.points)(s))
        .fold(1.0f64, |m, p| m.max(p.0));
    let mut chart = ChartBuilder::on(area)
        .caption(curve.caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..x_max, curve.y_range.clone())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(curve.y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, curve.chance), (x_max, curve.chance)],
            BLACK.mix(0.3),
        ))
        .map_err(|e| e.to_string())?;
    for (k, s) in all.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points = (curve.points)(s).iter().copied();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)).point_size(3))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// 1200 -> "1.2k", 3e9 -> "3.0G".
fn human(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{:.1}G", v / 1e9),
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}
