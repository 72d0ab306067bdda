//! Filter steps: CEL expressions compiled once when a config is applied.
//!
//! Variables: `value` (number as double, bool, or string), `tag`, `device`,
//! `group` (strings) and `ts` (milliseconds since the epoch, int). A result
//! other than a bool, or an evaluation error, is a rule failure.

use std::sync::Arc;

use cel::{Context, Program, Value};
use weir_crds::message::TagValue;

use crate::error::{Error, Result};

/// A compiled expression and a root context with the standard functions,
/// shared by every tag the expression applies to: building the context per
/// reading would register every function again, and per tag would cost
/// memory for each of thousands of tags.
pub struct Compiled {
    program: Program,
    root: Context<'static>,
}

impl Compiled {
    pub fn new(expr: &str) -> Result<Arc<Self>> {
        let program = Program::compile(expr).map_err(|e| Error::Rule {
            rule: expr.into(),
            message: format!(
                "expression does not parse: {}",
                e.to_string().lines().next().unwrap_or_default()
            ),
        })?;
        Ok(Arc::new(Self {
            program,
            root: Context::default(),
        }))
    }
}

pub struct Filter {
    compiled: Arc<Compiled>,
    tag: Arc<String>,
    device: Arc<String>,
    group: Arc<String>,
    /// A fast path for the common `value OP number [&& value OP number]`
    /// shape, checked to give the same answer as CEL.
    fast: Option<FastExpr>,
}

impl Filter {
    pub fn compile(expr: &str, device: &str, group: &str, tag: &str) -> Result<Self> {
        Ok(Self::with(Compiled::new(expr)?, expr, device, group, tag))
    }

    /// A filter for one tag from an expression compiled once.
    pub fn with(compiled: Arc<Compiled>, expr: &str, device: &str, group: &str, tag: &str) -> Self {
        Self {
            compiled,
            tag: Arc::new(tag.into()),
            device: Arc::new(device.into()),
            group: Arc::new(group.into()),
            fast: FastExpr::parse(expr),
        }
    }

    /// Keep the reading? `Err` with the reason when the rule fails on it.
    pub fn keep(&self, ts: i64, value: &TagValue) -> Result<bool, String> {
        if let (Some(fast), Some(v)) = (&self.fast, numeric(value)) {
            return Ok(fast.eval(v));
        }
        let mut ctx = self.compiled.root.new_inner_scope();
        ctx.add_variable_from_value(
            "value",
            match value {
                TagValue::Bool(b) => Value::Bool(*b),
                TagValue::Int(i) => Value::Float(*i as f64),
                TagValue::Float(f) => Value::Float(*f),
                TagValue::Text(s) => Value::String(Arc::new(s.clone())),
            },
        );
        ctx.add_variable_from_value("tag", Value::String(self.tag.clone()));
        ctx.add_variable_from_value("device", Value::String(self.device.clone()));
        ctx.add_variable_from_value("group", Value::String(self.group.clone()));
        ctx.add_variable_from_value("ts", Value::Int(ts));
        match self.compiled.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("filter returned {other:?}, not a bool")),
            Err(e) => Err(format!("filter failed: {e}")),
        }
    }
}

fn numeric(v: &TagValue) -> Option<f64> {
    match v {
        TagValue::Int(i) => Some(*i as f64),
        TagValue::Float(f) => Some(*f),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, PartialEq)]
struct Cmp {
    op: Op,
    rhs: f64,
}

/// `value OP number` terms joined by `&&` (all) or `||` (any).
#[derive(Debug, PartialEq)]
struct FastExpr {
    all: bool,
    terms: Vec<Cmp>,
}

impl FastExpr {
    fn parse(expr: &str) -> Option<Self> {
        let (all, parts): (bool, Vec<&str>) = if expr.contains("||") {
            if expr.contains("&&") {
                return None;
            }
            (false, expr.split("||").collect())
        } else {
            (true, expr.split("&&").collect())
        };
        let mut terms = Vec::new();
        for p in parts {
            let p = p.trim();
            let rest = p.strip_prefix("value")?.trim_start();
            let (op, num) = [
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<", Op::Lt),
                (">", Op::Gt),
            ]
            .iter()
            .find_map(|(s, op)| rest.strip_prefix(s).map(|n| (*op, n.trim())))?;
            // Only plain decimal literals; anything else goes to CEL.
            if num.is_empty()
                || !num
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            {
                return None;
            }
            // CEL never finds a double equal to an int (`7.0 == 7` is
            // false); leave such comparisons to CEL so the answer is the same.
            if matches!(op, Op::Eq | Op::Ne) && !num.contains('.') {
                return None;
            }
            terms.push(Cmp {
                op,
                rhs: num.parse().ok()?,
            });
        }
        Some(Self { all, terms })
    }

    fn eval(&self, v: f64) -> bool {
        let t = |c: &Cmp| match c.op {
            Op::Lt => v < c.rhs,
            Op::Le => v <= c.rhs,
            Op::Gt => v > c.rhs,
            Op::Ge => v >= c.rhs,
            Op::Eq => v == c.rhs,
            Op::Ne => v != c.rhs,
        };
        if self.all {
            self.terms.iter().all(t)
        } else {
            self.terms.iter().any(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(expr: &str) -> Filter {
        Filter::compile(expr, "pump-1", "fast", "flow").unwrap()
    }

    #[test]
    fn fast_path_agrees_with_cel() {
        for expr in [
            "value >= 0.0 && value < 50.0",
            "value > 10 || value <= -3.5",
            "value != 7.0",
            "value == 7.0",
        ] {
            let mut filter = f(expr);
            assert!(filter.fast.is_some(), "{expr}");
            let fast = filter.fast.take().unwrap();
            for v in [-10.0, -3.5, 0.0, 7.0, 10.0, 12.5, 49.9, 50.0, 80.0] {
                let cel = filter.keep(0, &TagValue::Float(v)).unwrap();
                assert_eq!(fast.eval(v), cel, "{expr} at {v}");
            }
        }
    }

    #[test]
    fn cel_sees_tag_device_and_text_values() {
        let filter = f("tag == 'flow' && device.startsWith('pump') && value > 2.0");
        assert!(filter.fast.is_none());
        assert!(filter.keep(0, &TagValue::Float(3.0)).unwrap());
        assert!(!filter.keep(0, &TagValue::Float(1.0)).unwrap());
        let text = f("value == 'auto'");
        assert!(text.keep(0, &TagValue::Text("auto".into())).unwrap());
        let b = f("value");
        assert!(b.keep(0, &TagValue::Bool(true)).unwrap());
    }

    #[test]
    fn failures_are_reported_not_panics() {
        let filter = f("value + 1.0");
        assert!(filter.keep(0, &TagValue::Float(3.0)).is_err());
        let filter = f("value > 'x'");
        assert!(filter.keep(0, &TagValue::Float(3.0)).is_err());
        assert!(Filter::compile("value >", "d", "g", "t").is_err());
    }
}
