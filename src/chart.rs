//! Charts in the terminal (`.chart` in the shell and `netlens -c`): a query result drawn with
//! Unicode, for a look without leaving the shell. Bars and histograms use eighth-blocks
//! (`▏`..`█`), so a bar's length is exact to an eighth of a character; line and scatter plots use
//! Braille cells, 2 x 4 dots each, so a 70 x 16 plot has 140 x 64 points. Colour (ANSI) only when
//! asked, i.e. when the output is a terminal and `NO_COLOR` is unset.
//!
//! Pure: takes a result as [`JsonTable`] and returns text; the shell prints it.

use crate::error::{Error, Result};
use crate::output::JsonTable;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    /// `label, value`: one horizontal bar per row.
    Bar,
    /// `x, y[, series]`: points joined in x order.
    Line,
    /// The first numeric column, counted into bins.
    Hist,
    /// `x, y[, series]`: points.
    Scatter,
}

/// How big, and in colour or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartOptions {
    pub width: usize,
    pub height: usize,
    pub bins: usize,
    pub colour: bool,
}

const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
const COLOURS: [&str; 6] = ["\x1b[34m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[36m", "\x1b[31m"];
const RESET: &str = "\x1b[0m";
/// Bars drawn at most; the rest are counted in a note.
const MAX_BARS: usize = 60;

/// Draws `table` as `kind`.
pub fn draw(kind: ChartKind, table: &JsonTable, opts: ChartOptions) -> Result<String> {
    if table.rows.is_empty() {
        return Ok("(no rows to draw)\n".to_string());
    }
    let mut text = match kind {
        ChartKind::Bar => bars(table, opts)?,
        ChartKind::Hist => histogram(table, opts)?,
        ChartKind::Line | ChartKind::Scatter => plot(table, opts, kind == ChartKind::Line)?,
    };
    if table.truncated {
        text.push_str(&format!("(drawn from the first {} rows)\n", table.rows.len()));
    }
    Ok(text)
}

/// A cell as a number: numbers, numeric text, and times (as seconds since the epoch).
fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::String(s) => s.parse::<f64>().ok().or_else(|| time(s)),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

fn time(text: &str) -> Option<f64> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|t| t.and_utc().timestamp_micros() as f64 / 1e6)
}

fn label(v: &serde_json::Value) -> String {
    match v {
        // Labels are data (process names, hosts): no control character reaches the terminal.
        serde_json::Value::String(s) => crate::output::visible(s),
        serde_json::Value::Null => "NULL".to_string(),
        other => other.to_string(),
    }
}

/// A number short enough for an axis or a bar's end.
fn short(x: f64) -> String {
    let a = x.abs();
    if a >= 1e12 {
        format!("{:.1}T", x / 1e12)
    } else if a >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A bar of `value / max` of `width` characters, to the eighth.
fn bar(value: f64, max: f64, width: usize) -> String {
    if max <= 0.0 || value <= 0.0 {
        return String::new();
    }
    let eighths = ((value / max) * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(EIGHTHS[eighths % 8 - 1]);
    }
    s
}

fn paint(text: &str, colour: Option<&str>) -> String {
    match colour {
        Some(c) => format!("{c}{text}{RESET}"),
        None => text.to_string(),
    }
}

fn need(table: &JsonTable, columns: usize, what: &str) -> Result<()> {
    if table.columns.len() < columns {
        return Err(Error::Usage(format!(
            ".chart {what} needs {columns} columns ({}), the query gave {}",
            match what {
                "bar" => "label, value",
                _ => "x, y[, series]",
            },
            table.columns.len()
        )));
    }
    Ok(())
}

fn bars(table: &JsonTable, opts: ChartOptions) -> Result<String> {
    need(table, 2, "bar")?;
    let rows: Vec<(String, f64)> = table
        .rows
        .iter()
        .take(MAX_BARS)
        .map(|r| (label(&r[0]), number(&r[1]).unwrap_or(0.0)))
        .collect();
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(opts.width / 3);
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let bar_width = opts.width.saturating_sub(label_width + 12).max(10);
    let colour = opts.colour.then_some(COLOURS[0]);
    let mut out = format!("{} by {}\n", table.columns[1], table.columns[0]);
    for (l, v) in &rows {
        let l: String = l.chars().take(label_width).collect();
        out.push_str(&format!(
            "{l:>label_width$} │{} {}\n",
            paint(&bar(*v, max, bar_width), colour),
            short(*v)
        ));
    }
    if table.rows.len() > MAX_BARS {
        out.push_str(&format!("({} more rows not drawn)\n", table.rows.len() - MAX_BARS));
    }
    Ok(out)
}

fn histogram(table: &JsonTable, opts: ChartOptions) -> Result<String> {
    let column = (0..table.columns.len())
        .find(|&c| table.rows.iter().any(|r| number(&r[c]).is_some()))
        .ok_or_else(|| Error::Usage(".chart hist needs a numeric column".to_string()))?;
    let values: Vec<f64> = table.rows.iter().filter_map(|r| number(&r[column])).collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let bins = opts.bins.clamp(1, 200);
    let step = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for x in &values {
        let i = (((x - lo) / step) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let edges: Vec<String> = (0..bins)
        .map(|i| {
            format!(
                "[{}, {})",
                short(lo + step * i as f64),
                short(lo + step * (i + 1) as f64)
            )
        })
        .collect();
    let label_width = edges.iter().map(String::len).max().unwrap_or(0);
    let bar_width = opts.width.saturating_sub(label_width + 10).max(10);
    let colour = opts.colour.then_some(COLOURS[0]);
    let mut out = format!("{} ({} values, {} bins)\n", table.columns[column], values.len(), bins);
    for (edge, n) in edges.iter().zip(&counts) {
        out.push_str(&format!(
            "{edge:>label_width$} │{} {n}\n",
            paint(&bar(*n as f64, max, bar_width), colour)
        ));
    }
    Ok(out)
}

/// A Braille canvas: each character is 2 x 4 dots.
struct Canvas {
    width: usize,
    height: usize,
    /// Dot bits per cell, and the series that set the cell last (for its colour).
    cells: Vec<(u8, usize)>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            cells: vec![(0, 0); width * height],
        }
    }

    /// Sets dot (x, y), y counted from the bottom.
    fn dot(&mut self, x: usize, y: usize, series: usize) {
        if x >= self.width * 2 || y >= self.height * 4 {
            return;
        }
        let row = self.height - 1 - y / 4;
        let (cx, dy) = (x / 2, 3 - y % 4);
        const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
        let cell = &mut self.cells[row * self.width + cx];
        cell.0 |= BITS[x % 2][dy];
        cell.1 = series;
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), series: usize) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            if x >= 0 && y >= 0 {
                self.dot(x as usize, y as usize, series);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn row(&self, r: usize, colour: bool) -> String {
        (0..self.width)
            .map(|c| {
                let (bits, series) = self.cells[r * self.width + c];
                let ch = char::from_u32(0x2800 + u32::from(bits)).unwrap_or(' ');
                if bits == 0 || !colour {
                    ch.to_string()
                } else {
                    paint(&ch.to_string(), Some(COLOURS[series % COLOURS.len()]))
                }
            })
            .collect()
    }
}

fn plot(table: &JsonTable, opts: ChartOptions, joined: bool) -> Result<String> {
    need(table, 2, if joined { "line" } else { "scatter" })?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in &table.rows {
        let (Some(x), Some(y)) = (number(&r[0]), number(&r[1])) else {
            continue;
        };
        let name = r.get(2).map(label).unwrap_or_else(|| table.columns[1].clone());
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((x, y)),
            None => series.push((name, vec![(x, y)])),
        }
    }
    if series.is_empty() {
        return Err(Error::Usage(format!(
            ".chart needs numbers or times in {} and {}",
            table.columns[0], table.columns[1]
        )));
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if y0 > 0.0 && y0 < (y1 - y0) {
        y0 = 0.0; // a baseline at zero when the data sits near it
    }
    let (xs, ys) = ((x1 - x0).max(f64::MIN_POSITIVE), (y1 - y0).max(f64::MIN_POSITIVE));
    let axis_width = [short(y0), short(y1)].iter().map(String::len).max().unwrap_or(1);
    let width = opts.width.saturating_sub(axis_width + 3).max(10);
    let height = opts.height.max(4);
    let mut canvas = Canvas::new(width, height);
    let to_dots = |(x, y): (f64, f64)| {
        (
            ((x - x0) / xs * (width * 2 - 1) as f64).round() as i64,
            ((y - y0) / ys * (height * 4 - 1) as f64).round() as i64,
        )
    };
    for (i, (_, points)) in series.iter_mut().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut previous = None;
        for &p in points.iter() {
            let d = to_dots(p);
            match (joined, previous) {
                (true, Some(prev)) => canvas.line(prev, d, i),
                _ => canvas.dot(d.0.max(0) as usize, d.1.max(0) as usize, i),
            }
            previous = Some(d);
        }
    }
    let x_is_time = table
        .rows
        .iter()
        .any(|r| matches!(&r[0], serde_json::Value::String(s) if time(s).is_some()));
    let x_text = |x: f64| {
        if x_is_time {
            chrono::DateTime::from_timestamp(x as i64, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        } else {
            short(x)
        }
    };
    let mut out = format!("{} by {}\n", table.columns[1], table.columns[0]);
    for r in 0..height {
        let tick = match r {
            0 => short(y1),
            _ if r == height - 1 => short(y0),
            _ => String::new(),
        };
        out.push_str(&format!("{tick:>axis_width$} ┤{}\n", canvas.row(r, opts.colour)));
    }
    let (left, right) = (x_text(x0), x_text(x1));
    out.push_str(&format!(
        "{:>axis_width$} └{}\n{:>pad$}{left}{right:>gap$}\n",
        "",
        "─".repeat(width),
        "",
        pad = axis_width + 2,
        gap = width.saturating_sub(left.len()).max(right.len() + 1)
    ));
    if series.len() > 1 {
        let legend: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, (name, _))| paint(&format!("⣿ {name}"), opts.colour.then_some(COLOURS[i % COLOURS.len()])))
            .collect();
        out.push_str(&format!("{}\n", legend.join("  ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(columns: &[&str], rows: Vec<Vec<serde_json::Value>>) -> JsonTable {
        JsonTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            types: vec![],
            rows,
            truncated: false,
        }
    }

    const PLAIN: ChartOptions = ChartOptions {
        width: 40,
        height: 4,
        bins: 4,
        colour: false,
    };

    #[test]
    fn bars_are_exact_to_an_eighth() {
        assert_eq!(bar(1.0, 1.0, 4), "████");
        assert_eq!(bar(0.5, 1.0, 3), "█▌");
        assert_eq!(bar(0.0, 1.0, 3), "");
        let t = table(
            &["proc", "bytes"],
            vec![vec![json!("curl"), json!(100)], vec![json!("sshd"), json!(50)]],
        );
        let text = draw(ChartKind::Bar, &t, PLAIN).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "bytes by proc");
        let long = lines[1].matches('█').count();
        let half = lines[2].matches('█').count();
        assert!(lines[1].starts_with("curl │") && lines[1].ends_with(" 100"), "{text}");
        assert!((long as i64 - 2 * half as i64).abs() <= 1, "{text}");
    }

    #[test]
    fn histograms_count_every_value_once() {
        let rows = (0..100).map(|i| vec![json!(i)]).collect();
        let text = draw(ChartKind::Hist, &table(&["n"], rows), PLAIN).unwrap();
        let counts: Vec<usize> = text
            .lines()
            .skip(1)
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(counts, vec![25, 25, 25, 25]);
    }

    #[test]
    fn lines_reach_both_corners_and_times_label_the_axis() {
        let t = table(
            &["ts", "rate"],
            vec![
                vec![json!("2026-12-05T10:00:00"), json!(0)],
                vec![json!("2026-12-05T11:00:00"), json!(10)],
            ],
        );
        let text = draw(ChartKind::Line, &t, PLAIN).unwrap();
        let canvas: Vec<Vec<char>> = text
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.split_once('┤').unwrap().1.chars().collect())
            .collect();
        let blank = '\u{2800}';
        assert_ne!(
            *canvas[0].last().unwrap(),
            blank,
            "the top right corner is reached:\n{text}"
        );
        assert_ne!(canvas[3][0], blank, "the bottom left corner is reached:\n{text}");
        assert_eq!(canvas[0][0], blank, "nothing at the top left:\n{text}");
        assert!(
            text.contains("2026-12-05 10:00:00") && text.contains("2026-12-05 11:00:00"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour unless asked");
    }

    #[test]
    fn bad_shapes_are_refused_with_the_expected_columns() {
        let e = draw(ChartKind::Bar, &table(&["x"], vec![vec![json!(1)]]), PLAIN).unwrap_err();
        assert!(e.to_string().contains("label, value"), "{e}");
        let e = draw(
            ChartKind::Line,
            &table(&["a", "b"], vec![vec![json!("x"), json!("y")]]),
            PLAIN,
        )
        .unwrap_err();
        assert!(e.to_string().contains("numbers or times"), "{e}");
        assert_eq!(
            draw(ChartKind::Scatter, &table(&["a", "b"], vec![]), PLAIN).unwrap(),
            "(no rows to draw)\n"
        );
    }
}
