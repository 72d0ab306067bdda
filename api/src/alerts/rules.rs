//! Alert rules: what a project asks to be told about, as stored and as sent
//! over the API. A rule is a flat [`RuleSpec`] (the kind says which fields
//! count) so the JSON stays simple for the console and for `curl`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;
use crate::extract::{check as chk, Validate};

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A tag's value compared with a limit (`op`, `threshold`, or `low`/`high` for `outside`).
    Threshold,
    /// No reading of the tag for `absent_secs`.
    Absence,
    /// The tag changes faster than `max_rate_per_sec` (absolute, units per second).
    Rate,
    /// The fleet reports the gateway offline.
    GatewayOffline,
    /// The device's readings fail with timeout/disconnected errors.
    DeviceDown,
    /// The fleet reports the tenant's MQTT cluster degraded.
    ClusterDegraded,
    /// The historian recorded readings of the gateway as lost for good
    /// (a `reading_gaps` row). One alert per gap: it fires when the gap is
    /// recorded and resolves on its own [`DATA_GAP_FIRING_SECS`] later, as
    /// there is nothing to wait for (the gap stays in the fleet events and
    /// on the chart).
    DataGap,
}

/// How long a `data_gap` alert stays firing before it resolves on its own.
pub const DATA_GAP_FIRING_SECS: i64 = 600;

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Absence => "absence",
            RuleKind::Rate => "rate",
            RuleKind::GatewayOffline => "gateway_offline",
            RuleKind::DeviceDown => "device_down",
            RuleKind::ClusterDegraded => "cluster_degraded",
            RuleKind::DataGap => "data_gap",
        }
    }

    /// Rules that look at one tag of the readings.
    pub fn is_tag_rule(self) -> bool {
        matches!(
            self,
            RuleKind::Threshold | RuleKind::Absence | RuleKind::Rate
        )
    }

    /// Alerts about something behind a gateway: inhibited while that gateway is offline.
    pub fn is_device_level(self) -> bool {
        matches!(
            self,
            RuleKind::Threshold | RuleKind::Absence | RuleKind::Rate | RuleKind::DeviceDown
        )
    }
}

/// Comparison of a threshold rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ThresholdOp {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
    /// Below `low` or above `high`.
    #[serde(rename = "outside")]
    Outside,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    #[default]
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

fn default_true() -> bool {
    true
}

/// A rule as created and updated over the API (`PUT` replaces it whole).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[schema(schema_with = crate::extract::schema::text::<1, 128>)]
    pub name: String,
    pub kind: RuleKind,
    /// Only readings of this gateway (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::extract::schema::topic_level_opt::<1, 128>)]
    pub gateway: Option<String>,
    /// Only readings of this device (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::extract::schema::topic_level_opt::<1, 128>)]
    pub device: Option<String>,
    /// The tag (threshold, absence, rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::extract::schema::topic_level_opt::<1, 128>)]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<ThresholdOp>,
    /// Limit for `>` and `<`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.2)]
    pub threshold: Option<f64>,
    /// One edge of the band for `outside` (the lower one once stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// The other edge of the band for `outside` (the upper one once stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Absence: seconds without a reading.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::extract::int::opt"
    )]
    pub absent_secs: Option<u64>,
    /// Rate: largest allowed change per second (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_per_sec: Option<f64>,
    /// How long the condition must hold before the alert fires (0 = at once).
    #[serde(default, deserialize_with = "crate::extract::int::de")]
    #[schema(maximum = 604800)]
    pub for_secs: u64,
    #[serde(default)]
    pub severity: Severity,
    /// Extra labels, used for grouping, silences and routing.
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::labels)]
    pub labels: BTreeMap<String, String>,
    /// Human summary; placeholders: `{{gateway}}`, `{{device}}`, `{{tag}}`,
    /// `{{value}}`, `{{threshold}}`, `{{low}}`, `{{high}}` (with the tag's
    /// `decimals` from its gateway's config, else six significant digits),
    /// `{{unit}}` (the tag's unit after a space, or nothing), `{{rule}}`,
    /// `{{severity}}`, `{{cluster}}`, `{{seq_from}}`, `{{seq_to}}`,
    /// `{{reason}}` (data_gap) and any label name.
    /// E.g. `{{gateway}}/{{tag}} is {{value}}{{unit}} (limit {{threshold}}{{unit}})`.
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 1000>)]
    pub summary: String,
    /// Channels that get this rule's notifications; empty = every channel of the project.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub channels: Vec<Uuid>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

const MAX_FOR_SECS: u64 = 7 * 24 * 3600;

/// Placeholders a summary may use besides label names.
const PLACEHOLDERS: &[&str] = &[
    "gateway",
    "device",
    "tag",
    "value",
    "unit",
    "threshold",
    "low",
    "high",
    "rule",
    "severity",
    "cluster",
    "seq_from",
    "seq_to",
    "reason",
];

// What each kind needs (the match in `validate`). The band of `outside`
// may come in either order ([`RuleSpec::with_sorted_band`]): JSON Schema
// cannot say low < high, and "outside 6.5 and 8.5" means one band anyway.
crate::body_rule!(
    RuleSpecBody,
    RuleSpec,
    serde_json::json!({"oneOf": [
        {"required": ["op", "threshold", "tag"], "properties": {
            "kind": {"const": "threshold"}, "op": {"enum": [">", "<"]},
            "threshold": {"type": "number"}, "tag": {"type": "string"},
        }},
        {"required": ["op", "low", "high", "tag"], "properties": {
            "kind": {"const": "threshold"}, "op": {"const": "outside"},
            "low": {"type": "number"}, "high": {"type": "number"}, "tag": {"type": "string"},
        }},
        {"required": ["absent_secs", "tag"], "properties": {
            "kind": {"const": "absence"},
            "absent_secs": {"type": "integer", "minimum": 1, "maximum": MAX_FOR_SECS},
            "tag": {"type": "string"},
        }},
        {"required": ["max_rate_per_sec", "tag"], "properties": {
            "kind": {"const": "rate"},
            "max_rate_per_sec": {"type": "number", "exclusiveMinimum": 0},
            "tag": {"type": "string"},
        }},
        {"properties": {"kind": {"enum": ["gateway_offline", "device_down", "cluster_degraded"]}}},
        // Fires at once (see `validate`): `for_secs` must be 0 or absent.
        {"properties": {
            "kind": {"const": "data_gap"},
            "for_secs": {"type": "integer", "minimum": 0, "maximum": 0},
        }},
    ]})
);

impl Validate for RuleSpec {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::text(&mut e, "name", &self.name, 1, 128);
        chk::text(&mut e, "summary", &self.summary, 0, 1000);
        for (f, v) in [
            ("gateway", &self.gateway),
            ("device", &self.device),
            ("tag", &self.tag),
        ] {
            if let Some(v) = v {
                chk::text(&mut e, f, v, 1, 128);
                if v.contains(['/', '+', '#']) {
                    e.push(FieldError::new(f, "must not contain '/', '+' or '#'"));
                }
            }
        }
        if self.for_secs > MAX_FOR_SECS {
            e.push(FieldError::new(
                "for_secs",
                "must be at most 604800 (7 days)",
            ));
        }
        let finite = |x: Option<f64>| x.is_none_or(f64::is_finite);
        for (f, v) in [
            ("threshold", self.threshold),
            ("low", self.low),
            ("high", self.high),
            ("max_rate_per_sec", self.max_rate_per_sec),
        ] {
            if !finite(v) {
                e.push(FieldError::new(f, "must be a finite number"));
            }
        }
        if self.kind.is_tag_rule() && self.tag.is_none() {
            e.push(FieldError::new("tag", "required for this kind"));
        }
        match self.kind {
            RuleKind::Threshold => match self.op {
                None => e.push(FieldError::new(
                    "op",
                    "required for threshold rules: '>', '<' or 'outside'",
                )),
                Some(ThresholdOp::Above | ThresholdOp::Below) if self.threshold.is_none() => {
                    e.push(FieldError::new("threshold", "required for '>' and '<'"))
                }
                Some(ThresholdOp::Outside) => match (self.low, self.high) {
                    (Some(_), Some(_)) => {}
                    (None, _) => e.push(FieldError::new("low", "required for 'outside'")),
                    (_, None) => e.push(FieldError::new("high", "required for 'outside'")),
                },
                _ => {}
            },
            RuleKind::Absence => match self.absent_secs {
                Some(s) if (1..=MAX_FOR_SECS).contains(&s) => {}
                _ => e.push(FieldError::new(
                    "absent_secs",
                    "required: 1 to 604800 seconds",
                )),
            },
            RuleKind::Rate => match self.max_rate_per_sec {
                Some(r) if r > 0.0 => {}
                _ => e.push(FieldError::new(
                    "max_rate_per_sec",
                    "required and greater than 0",
                )),
            },
            RuleKind::GatewayOffline | RuleKind::DeviceDown | RuleKind::ClusterDegraded => {}
            // Fires at once: a lost range does not come back by waiting.
            RuleKind::DataGap if self.for_secs != 0 => e.push(FieldError::new(
                "for_secs",
                "must be 0 for data_gap rules: a gap is recorded once it cannot be filled any more",
            )),
            RuleKind::DataGap => {}
        }
        if self.labels.len() > 32 {
            e.push(FieldError::new("labels", "at most 32 labels"));
        }
        for (k, v) in &self.labels {
            if !valid_label_name(k) {
                e.push(FieldError::new(
                    format!("labels.{k}"),
                    "label names are letters, digits and '_', not starting with a digit",
                ));
            }
            chk::text(&mut e, &format!("labels.{k}"), v, 0, 256);
        }
        for name in placeholders(&self.summary) {
            if !PLACEHOLDERS.contains(&name) && !self.labels.contains_key(name) {
                e.push(FieldError::new(
                    "summary",
                    format!("unknown placeholder {{{{{name}}}}}"),
                ));
            }
        }
        if self.channels.len() > 32 {
            e.push(FieldError::new("channels", "at most 32 channels"));
        }
        chk::finish(e)
    }
}

pub fn valid_label_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names inside `{{ }}` in a template.
fn placeholders(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim());
        rest = &after[j + 2..];
    }
    out
}

/// Fill `{{name}}` placeholders from `vars` (unknown names become empty).
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        if let Some(v) = vars.get(after[..j].trim()) {
            out.push_str(v);
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

impl RuleSpec {
    /// The band of `outside` with `low` its lower edge, whichever order it
    /// was given in (what is stored and shown).
    pub fn with_sorted_band(mut self) -> Self {
        if let (Some(l), Some(h)) = (self.low, self.high) {
            (self.low, self.high) = (Some(l.min(h)), Some(l.max(h)));
        }
        self
    }

    /// The summary used when the rule names none.
    pub fn default_summary(&self) -> &'static str {
        match (self.kind, self.op) {
            (RuleKind::Threshold, Some(ThresholdOp::Outside)) => {
                "{{gateway}}/{{device}}/{{tag}} is {{value}}{{unit}} (band {{low}}..{{high}}{{unit}})"
            }
            (RuleKind::Threshold, _) => {
                "{{gateway}}/{{device}}/{{tag}} is {{value}}{{unit}} (limit {{threshold}}{{unit}})"
            }
            (RuleKind::Absence, _) => "{{gateway}}/{{device}}/{{tag}}: no reading",
            (RuleKind::Rate, _) => "{{gateway}}/{{device}}/{{tag}} changes too fast ({{value}}{{unit}}/s)",
            (RuleKind::GatewayOffline, _) => "gateway {{gateway}} is offline",
            (RuleKind::DeviceDown, _) => "device {{gateway}}/{{device}} is down",
            (RuleKind::ClusterDegraded, _) => "MQTT cluster {{cluster}} is degraded",
            (RuleKind::DataGap, _) => {
                "readings of {{gateway}} lost: seq {{seq_from}}..{{seq_to}} ({{reason}})"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> RuleSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn renders_summary_placeholders() {
        let mut v = BTreeMap::new();
        v.insert("gateway".to_string(), "ps-1".to_string());
        v.insert("tag".to_string(), "chlorine".to_string());
        v.insert("value".to_string(), "0.1".to_string());
        v.insert("threshold".to_string(), "0.2".to_string());
        assert_eq!(
            render(
                "{{gateway}}/{{tag}} is {{value}} (limit {{ threshold }}) {{nope}}",
                &v
            ),
            "ps-1/chlorine is 0.1 (limit 0.2) "
        );
        assert_eq!(render("broken {{gateway", &v), "broken {{gateway");
    }

    #[test]
    fn validation_names_the_missing_fields() {
        let s = spec(serde_json::json!({"name": "x", "kind": "threshold"}));
        let fields: Vec<String> = s
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, vec!["tag", "op"]);
        let s = spec(
            serde_json::json!({"name": "x", "kind": "threshold", "tag": "t", "op": "outside", "low": 5.0, "high": 1.0}),
        );
        assert!(s.validate().is_ok());
        let s = s.with_sorted_band();
        assert_eq!((s.low, s.high), (Some(1.0), Some(5.0)));
        let s = spec(
            serde_json::json!({"name": "x", "kind": "threshold", "tag": "t", "op": ">", "threshold": 1.0, "summary": "{{bogus}}"}),
        );
        assert_eq!(s.validate().unwrap_err()[0].field, "summary");
        let s = spec(
            serde_json::json!({"name": "x", "kind": "absence", "tag": "t", "absent_secs": 30}),
        );
        assert!(s.validate().is_ok());
        assert!(serde_json::from_value::<RuleSpec>(
            serde_json::json!({"name": "x", "kind": "rate", "oops": 1})
        )
        .is_err());
    }
}
