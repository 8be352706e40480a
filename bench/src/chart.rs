//! The PNG: end-to-end throughput and acceptance latency p99 per load, one
//! bar per target. Text uses an embedded DejaVu Sans (plotters' ab_glyph
//! backend), so no system font or fontconfig is needed.
use crate::report::{loads, med};
use crate::{Results, Run, Target};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

const COLORS: [RGBColor; 4] =
    [RGBColor(150, 150, 150), RGBColor(214, 96, 77), RGBColor(67, 147, 195), RGBColor(90, 174, 97)];

pub fn draw(r: &Results, path: &Path) -> Result<()> {
    // Registering twice (report rewritten in the same process) is harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let (title, body) = root.split_vertically(50);
    title
        .draw(&Text::new(
            format!("Relay on loopback, {} — commit {}", r.date, r.commit),
            (20, 15),
            ("sans-serif", 22).into_font().style(FontStyle::Bold),
        ))
        .map_err(|e| anyhow!("{e:?}"))?;
    let (left, right) = body.split_horizontally(700);
    panel(r, &left, "delivered end to end (msg/s, higher is better)", |x| x.delivered_rate(), &Target::ALL)?;
    // The ceiling's latency is smtp-sink's (nothing stored): shown for scale.
    panel(r, &right, "acceptance latency p99 (ms, lower is better)", |x| x.p99_ms, &Target::ALL)?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    r: &Results,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    figure: impl Fn(&Run) -> f64,
    targets: &[Target],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let loads = loads(r);
    let n = loads.len().max(1) as f64;
    let values: Vec<Vec<f64>> =
        loads.iter().map(|l| targets.iter().map(|t| med(r, l, *t, &figure)).collect()).collect();
    let top = values.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .margin_bottom(110)
        .x_label_area_size(5)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&|v| if top >= 50.0 { format!("{v:.0}") } else { format!("{v:.1}") })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    let width = 0.8 / targets.len() as f64;
    // backend_coord gives pixels of the whole image; text is drawn relative to this panel.
    let (bx, by) = area.get_base_pixel();
    let local = |p: (i32, i32)| (p.0 - bx, p.1 - by);
    for (i, row) in values.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let x0 = i as f64 + 0.1 + j as f64 * width;
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x0 + width * 0.92, *v)], COLORS[j].filled())))
                .map_err(|e| anyhow!("{e:?}"))?;
            let text = if *v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") };
            let (px, py) = local(chart.backend_coord(&(x0, *v)));
            area.draw(&Text::new(text, (px, py - 14), ("sans-serif", 11))).map_err(|e| anyhow!("{e:?}"))?;
        }
    }
    // Load names under each group, on the panel (outside the plotting area).
    for (i, load) in loads.iter().enumerate() {
        let (px, py) = local(chart.backend_coord(&(i as f64 + 0.08, 0.0)));
        let lines = [
            load.name().split(", ").next().unwrap_or_default().to_string(),
            format!("{} sessions", load.sessions),
            format!("{} msg/session", load.per_session),
        ];
        for (k, line) in lines.iter().enumerate() {
            area.draw(&Text::new(line.clone(), (px, py + 8 + 15 * k as i32), ("sans-serif", 12)))
                .map_err(|e| anyhow!("{e:?}"))?;
        }
    }
    // Legend at the bottom of the panel.
    let (w, h) = area.dim_in_pixel();
    for (j, t) in targets.iter().enumerate() {
        let x = 70 + (j as i32) * ((w as i32 - 80) / targets.len() as i32);
        let y = h as i32 - 25;
        area.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], COLORS[j].filled())).map_err(|e| anyhow!("{e:?}"))?;
        area.draw(&Text::new(t.label().to_string(), (x + 20, y), ("sans-serif", 12))).map_err(|e| anyhow!("{e:?}"))?;
    }
    Ok(())
}
