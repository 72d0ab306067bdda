//! How an alert shows a tag's value: with the tag's `decimals` and `unit`
//! from its gateway's current config, so a summary reads "chlorine_residual
//! is 0.18 mg/L (limit 0.20 mg/L)" and not "is 0.18341134607608112 (limit
//! 0.2)".
//!
//! The worker keeps the formats of the gateways whose projects have tag
//! rules, read again with the gateways (on start, on change signals and
//! every `ingest::REFRESH`); a config version is parsed once. The engine
//! renders summaries without them (it stays pure); the worker renders again
//! with the format before a transition is stored or notified
//! ([`TagFormats::apply`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;
use weir_crds::edge_gateway::EdgeGatewaySpec;

use super::engine::{RuleDef, Transition};
use super::rules::{render, RuleKind, RuleSpec};
use crate::error::ApiError;
use crate::fleet::entities::{gateway, gateway_version};

/// Display of one tag.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TagFormat {
    pub decimals: Option<u8>,
    pub unit: Option<String>,
}

/// `(device, tag)` → format, for one config version of one gateway.
type GatewayFormats = HashMap<(String, String), TagFormat>;

/// Formats by (project, gateway slug), each with the config version read.
#[derive(Clone, Default)]
pub struct TagFormats {
    by_gateway: HashMap<(Uuid, String), (i64, Arc<GatewayFormats>)>,
}

/// Significant digits shown when a tag has no `decimals`.
const DEFAULT_SIGNIFICANT: i32 = 6;

/// A number as a summary shows it: with `decimals` when the tag has them,
/// else at most six significant digits, without trailing zeros; whole
/// numbers without a point.
pub fn fmt_value(v: f64, decimals: Option<u8>) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if let Some(d) = decimals {
        return format!("{v:.*}", usize::from(d));
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let magnitude = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    let places = (DEFAULT_SIGNIFICANT - 1 - magnitude).clamp(0, 15) as usize;
    let s = format!("{v:.places$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The placeholders of a summary: the labels, `rule`, and `value`,
/// `threshold`, `low`, `high` formatted with the tag's decimals; `unit` is
/// the tag's unit with a space before it (empty without one), so
/// `{{value}}{{unit}}` reads "0.18 mg/L" or "7".
pub fn summary(
    spec: &RuleSpec,
    labels: &BTreeMap<String, String>,
    value: Option<f64>,
    format: Option<&TagFormat>,
) -> String {
    let decimals = format.and_then(|f| f.decimals);
    let mut vars = labels.clone();
    vars.insert("rule".into(), spec.name.clone());
    let unit = format
        .and_then(|f| f.unit.as_deref())
        .filter(|u| !u.is_empty())
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    vars.insert("unit".into(), unit);
    if let Some(v) = value {
        vars.insert("value".into(), fmt_value(v, decimals));
    }
    for (k, v) in [
        ("threshold", spec.threshold),
        ("low", spec.low),
        ("high", spec.high),
    ] {
        if let Some(v) = v {
            vars.insert(k.into(), fmt_value(v, decimals));
        }
    }
    let template = if spec.summary.is_empty() {
        spec.default_summary()
    } else {
        &spec.summary
    };
    render(template, &vars)
}

/// Rules whose summaries show a tag's value.
fn on_tag_values(kind: RuleKind) -> bool {
    matches!(kind, RuleKind::Threshold | RuleKind::Rate)
}

impl TagFormats {
    /// Read the current config of every gateway in a project with a
    /// threshold or rate rule (configs not seen before only).
    pub async fn load(
        &mut self,
        db: &DatabaseConnection,
        defs: &[RuleDef],
    ) -> Result<(), ApiError> {
        let projects: HashSet<Uuid> = defs
            .iter()
            .filter(|d| on_tag_values(d.spec.kind))
            .map(|d| d.project_id)
            .collect();
        if projects.is_empty() {
            self.by_gateway.clear();
            return Ok(());
        }
        let rows: Vec<(Uuid, Uuid, String, i64)> = gateway::Entity::find()
            .select_only()
            .columns([
                gateway::Column::Id,
                gateway::Column::ProjectId,
                gateway::Column::Slug,
                gateway::Column::ConfigVersion,
            ])
            .filter(gateway::Column::ProjectId.is_in(projects.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        let mut next = HashMap::with_capacity(rows.len());
        for (id, project, slug, version) in rows {
            let key = (project, slug);
            let known = self.by_gateway.remove(&key).filter(|(v, _)| *v == version);
            let formats = match known {
                Some((_, f)) => f,
                None => Arc::new(read_version(db, id, version).await?),
            };
            next.insert(key, (version, formats));
        }
        self.by_gateway = next;
        Ok(())
    }

    /// The format of a tag, when its gateway's config names it.
    pub fn get(&self, project: Uuid, gateway: &str, device: &str, tag: &str) -> Option<&TagFormat> {
        let (_, f) = self.by_gateway.get(&(project, gateway.to_string()))?;
        f.get(&(device.to_string(), tag.to_string()))
    }

    /// The value with the decimals and unit of the tag the labels name;
    /// six significant digits when the config does not format it. A rate
    /// rule's value is a change per second: "0.5 mg/L/s".
    pub fn value_text(
        &self,
        project: Uuid,
        kind: RuleKind,
        labels: &BTreeMap<String, String>,
        value: f64,
    ) -> Option<String> {
        let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        let format = self.get(project, label("gateway"), label("device"), label("tag"));
        let mut s = fmt_value(value, format.and_then(|f| f.decimals));
        if let Some(u) = format
            .and_then(|f| f.unit.as_deref())
            .filter(|u| !u.is_empty())
        {
            s.push(' ');
            s.push_str(u);
        }
        if kind == RuleKind::Rate {
            s.push_str("/s");
        }
        Some(s)
    }

    /// Render again, with the tag's format, the summaries of transitions
    /// that show a tag's value.
    pub fn apply(&self, defs: &[RuleDef], out: &mut [Transition]) {
        for t in out.iter_mut().filter(|t| on_tag_values(t.kind)) {
            let label = |k: &str| t.labels.get(k).map(String::as_str).unwrap_or("");
            let Some(format) = self.get(
                t.project_id,
                label("gateway"),
                label("device"),
                label("tag"),
            ) else {
                continue;
            };
            let Some(def) = defs.iter().find(|d| d.id == t.rule_id) else {
                continue;
            };
            t.summary = summary(&def.spec, &t.labels, t.value, Some(format));
        }
    }
}

/// The formats of one config version; an unreadable spec has none (the
/// summaries then show plain numbers).
async fn read_version(
    db: &DatabaseConnection,
    gateway_id: Uuid,
    version: i64,
) -> Result<GatewayFormats, ApiError> {
    let spec: Option<String> = gateway_version::Entity::find_by_id((gateway_id, version))
        .select_only()
        .column(gateway_version::Column::Spec)
        .into_tuple()
        .one(db)
        .await?;
    let Some(spec) = spec.and_then(|s| serde_json::from_str::<EdgeGatewaySpec>(&s).ok()) else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    for d in &spec.config.devices {
        for t in d.groups.iter().flat_map(|g| &g.tags) {
            if t.decimals.is_some() || t.unit.is_some() {
                out.insert(
                    (d.name.clone(), t.name.clone()),
                    TagFormat {
                        decimals: t.decimals,
                        unit: t.unit.clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_the_tags_decimals_or_six_significant_digits() {
        assert_eq!(fmt_value(0.18341134607608112, Some(2)), "0.18");
        assert_eq!(fmt_value(0.2, Some(2)), "0.20");
        assert_eq!(fmt_value(7.0, Some(0)), "7");
        assert_eq!(fmt_value(0.18341134607608112, None), "0.183411");
        assert_eq!(fmt_value(3.141590118408203, None), "3.14159");
        assert_eq!(fmt_value(12345.678901, None), "12345.7");
        assert_eq!(fmt_value(0.5, None), "0.5");
        assert_eq!(fmt_value(42.0, None), "42");
        assert_eq!(fmt_value(-1.25, None), "-1.25");
        assert_eq!(fmt_value(1234567.8, None), "1234568");
    }

    #[test]
    fn value_text_carries_the_unit_and_per_second_for_rates() {
        let project = Uuid::new_v4();
        let mut f = TagFormats::default();
        let tags: GatewayFormats = [(
            ("d".to_string(), "level".to_string()),
            TagFormat {
                decimals: Some(1),
                unit: Some("m".into()),
            },
        )]
        .into_iter()
        .collect();
        f.by_gateway
            .insert((project, "gw".into()), (1, Arc::new(tags)));
        let labels: BTreeMap<String, String> =
            [("gateway", "gw"), ("device", "d"), ("tag", "level")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let text = |kind| f.value_text(project, kind, &labels, 2.345).unwrap();
        assert_eq!(text(RuleKind::Threshold), "2.3 m");
        assert_eq!(text(RuleKind::Rate), "2.3 m/s");
        let other = f.value_text(Uuid::new_v4(), RuleKind::Rate, &labels, 2.345);
        assert_eq!(
            other.as_deref(),
            Some("2.345/s"),
            "another project's gateway is not formatted"
        );
    }

    fn threshold_spec(summary: &str) -> RuleSpec {
        serde_json::from_value(serde_json::json!({
            "name": "Chlorine low", "kind": "threshold", "gateway": "gw", "device": "d",
            "tag": "chlorine_residual", "op": "<", "threshold": 0.2, "summary": summary,
        }))
        .unwrap()
    }

    #[test]
    fn summaries_carry_decimals_and_unit() {
        let labels: BTreeMap<String, String> = [
            ("gateway", "gw"),
            ("device", "d"),
            ("tag", "chlorine_residual"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let f = TagFormat {
            decimals: Some(2),
            unit: Some("mg/L".into()),
        };
        assert_eq!(
            summary(
                &threshold_spec(""),
                &labels,
                Some(0.18341134607608112),
                Some(&f)
            ),
            "gw/d/chlorine_residual is 0.18 mg/L (limit 0.20 mg/L)"
        );
        // A summary that writes the unit itself keeps it once.
        assert_eq!(
            summary(
                &threshold_spec("{{tag}} {{value}} mg/L"),
                &labels,
                Some(0.18341134607608112),
                Some(&f)
            ),
            "chlorine_residual 0.18 mg/L"
        );
        // Without a format (a tag the config does not name): plain numbers.
        assert_eq!(
            summary(
                &threshold_spec(""),
                &labels,
                Some(0.18341134607608112),
                None
            ),
            "gw/d/chlorine_residual is 0.183411 (limit 0.2)"
        );
    }
}
