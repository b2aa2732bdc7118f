//! The figures: each with its rounds, median, target and verdict; printed as a table and
//! written as JSON that can be compared across commits.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::load::median;

/// What a figure must be.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    Exactly(f64),
    /// No target: shown for what it tells.
    Info,
}

impl Target {
    fn holds(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
            Target::Below(t) => value < t,
            Target::Exactly(t) => value == t,
            Target::Info => true,
        }
    }

    fn text(self, unit: &str) -> String {
        let (sign, t) = match self {
            Target::AtLeast(t) => ("≥ ", t),
            Target::AtMost(t) => ("≤ ", t),
            Target::Below(t) => ("< ", t),
            Target::Exactly(t) => ("", t),
            Target::Info => return "—".into(),
        };
        format!("{sign}{}{}", plain(t), suffix(unit))
    }
}

fn suffix(unit: &str) -> String {
    match unit {
        "" => String::new(),
        "×" => "×".into(),
        u => format!(" {u}"),
    }
}

/// A target as people write it: no trailing zeros.
fn plain(x: f64) -> String {
    let text = number(x);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A number as people read it: thousands separated, three significant digits or so.
pub fn number(x: f64) -> String {
    if x.is_nan() {
        return "n/a".into();
    }
    let decimals = match x.abs() {
        a if a >= 100.0 || a == a.trunc() => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{x:.decimals$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub key: &'static str,
    pub label: String,
    pub unit: &'static str,
    pub target: Target,
    /// One value per round; the figure is their median.
    pub rounds: Vec<f64>,
    /// What else was measured with it (rates, counts, the two sides of a ratio).
    pub details: Map<String, Value>,
}

impl Figure {
    pub fn new(
        key: &'static str,
        label: impl Into<String>,
        unit: &'static str,
        target: Target,
    ) -> Self {
        Figure {
            key,
            label: label.into(),
            unit,
            target,
            rounds: Vec::new(),
            details: Map::new(),
        }
    }

    pub fn value(&self) -> f64 {
        median(&self.rounds)
    }

    pub fn pass(&self) -> bool {
        let v = self.value();
        !v.is_nan() && self.target.holds(v)
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }
}

/// The table, as Markdown (ready to paste into the README).
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| figure | value | target | result |\n|---|---|---|---|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {}{} | {} | {} |\n",
            f.label,
            number(f.value()),
            suffix(f.unit),
            f.target.text(f.unit),
            match (f.target, f.pass()) {
                (Target::Info, _) => "info",
                (_, true) => "pass",
                (_, false) => "**MISS**",
            }
        ));
    }
    out
}

/// Everything about the run and its figures, as JSON.
pub fn json(figures: &[Figure], run: Map<String, Value>) -> Value {
    let mut all = Map::new();
    for f in figures {
        let rounds: Vec<Value> = f.rounds.iter().map(|r| finite(*r)).collect();
        all.insert(
            f.key.to_owned(),
            json!({
                "figure": f.label,
                "value": finite(f.value()),
                "unit": f.unit,
                "target": f.target.text(f.unit),
                "pass": if matches!(f.target, Target::Info) { Value::Null } else { json!(f.pass()) },
                "rounds": rounds,
                "details": Value::Object(f.details.clone()),
            }),
        );
    }
    let mut root = run;
    root.insert("figures".into(), Value::Object(all));
    Value::Object(root)
}

/// JSON has no NaN: an unmeasured value is `null`.
pub fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub fn write(path: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(12345.6), "12,346");
        assert_eq!(number(2000.0), "2,000");
        assert_eq!(number(0.4567), "0.457");
        assert_eq!(number(1.5), "1.50");
        assert_eq!(number(42.25), "42.2");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(20.0), "20");
        assert_eq!(Target::AtLeast(0.5).text("×"), "≥ 0.5×");
        assert_eq!(Target::AtLeast(2000.0).text("/s"), "≥ 2,000 /s");
        assert_eq!(Target::Exactly(0.0).text(""), "0");
    }

    #[test]
    fn verdicts_follow_the_median() {
        let mut f = Figure::new("x", "x", "ms", Target::Below(10.0));
        f.rounds = vec![12.0, 8.0, 9.0];
        assert_eq!(f.value(), 9.0);
        assert!(f.pass());
        f.rounds.clear();
        assert!(!f.pass(), "an unmeasured figure does not pass");
    }
}
