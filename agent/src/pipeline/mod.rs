//! The pipeline: per-tag rule chains compiled from the config, applied to
//! every sample before it is queued.
//!
//! A tag's chain is: the tag's own scale/offset/decimals, then the steps of
//! every pipeline whose selector matches the tag, in config order. A step
//! that fails on a reading (a filter that errors, a number step on text)
//! turns the reading into an error entry (`RuleFailed`) in the frame and is
//! counted; it never stops the pipeline. A window step replaces the raw
//! readings by aggregates named `{tag}_{avg|min|max|count|last}`, published
//! in frames stamped with the window's end; steps after a window apply to
//! nothing (the aggregates are final).

pub mod deadband;
pub mod filter;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_crds::gateway::{GatewayConfig, Step, Tag};
use weir_crds::message::{topic, ErrorCode, TagValue};

use crate::error::{Error, Result};
use crate::sample::{render_rest, GroupSchema, PendingFrame, Sample};
use deadband::{Deadband, ReportOnChange};
use filter::Filter;
use window::{aggregate_name, Closed, Window};

/// Where frames go: the first three topic levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicBase {
    pub prefix: String,
    pub tenant: String,
    pub gateway: String,
}

impl TopicBase {
    pub fn topic(&self, device: &str, group: &str) -> String {
        topic(&self.prefix, &self.tenant, &self.gateway, device, group)
    }
}

/// Counters shared with metrics and status.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub readings_in: AtomicU64,
    pub readings_out: AtomicU64,
    /// Readings a step dropped on purpose (filter false, deadband, ...).
    pub readings_filtered: AtomicU64,
    pub rule_failures: AtomicU64,
    pub last_rule_failure: Mutex<Option<String>>,
}

enum StepInst {
    Filter(Box<Filter>),
    Scale {
        factor: f64,
        offset: f64,
    },
    Round {
        scale: f64,
        offset: f64,
        decimals: Option<i32>,
    },
    Deadband(Deadband),
    ReportOnChange(ReportOnChange),
    RateOfChange {
        per_s: f64,
        prev: Option<(i64, f64)>,
    },
    Window {
        window: Window,
        names: Vec<(weir_crds::gateway::Aggregate, String)>,
    },
}

/// What a chain made of one reading.
enum Outcome {
    Value(TagValue),
    Dropped,
    Failed(String),
}

struct Chain {
    tag: String,
    steps: Vec<StepInst>,
}

fn as_number(v: &TagValue) -> Option<f64> {
    match v {
        TagValue::Int(i) => Some(*i as f64),
        TagValue::Float(f) => Some(*f),
        TagValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        TagValue::Text(_) => None,
    }
}

impl Chain {
    fn run(&mut self, ts: i64, value: TagValue, closed: &mut Vec<(usize, Closed)>) -> Outcome {
        let mut v = value;
        for (i, step) in self.steps.iter_mut().enumerate() {
            match step {
                StepInst::Filter(f) => match f.keep(ts, &v) {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Dropped,
                    Err(e) => return Outcome::Failed(e),
                },
                StepInst::Scale { factor, offset } => {
                    let Some(n) = as_number(&v) else {
                        return Outcome::Failed("scale: value is not a number".into());
                    };
                    v = TagValue::Float(n * *factor + *offset);
                }
                StepInst::Round {
                    scale,
                    offset,
                    decimals,
                } => {
                    // Bools and text keep their type; numbers are scaled.
                    let Some(n) = (match &v {
                        TagValue::Int(i) => Some(*i as f64),
                        TagValue::Float(f) => Some(*f),
                        _ => None,
                    }) else {
                        continue;
                    };
                    let mut x = n * *scale + *offset;
                    if let Some(d) = decimals {
                        let p = 10f64.powi(*d);
                        x = (x * p).round() / p;
                    }
                    v = match v {
                        TagValue::Int(_) if *scale == 1.0 && *offset == 0.0 => v,
                        _ => TagValue::Float(x),
                    };
                }
                StepInst::Deadband(d) => {
                    let Some(n) = as_number(&v) else {
                        return Outcome::Failed("deadband: value is not a number".into());
                    };
                    if !d.pass(n) {
                        return Outcome::Dropped;
                    }
                }
                StepInst::ReportOnChange(r) => {
                    if !r.pass(ts, &v) {
                        return Outcome::Dropped;
                    }
                }
                StepInst::RateOfChange { per_s, prev } => {
                    let Some(n) = as_number(&v) else {
                        return Outcome::Failed("rateOfChange: value is not a number".into());
                    };
                    let last = prev.replace((ts, n));
                    match last {
                        Some((t0, v0)) if ts > t0 => {
                            v = TagValue::Float((n - v0) / ((ts - t0) as f64 / 1000.0) * *per_s);
                        }
                        // The first reading has no rate yet; a reading that
                        // does not move time forward has none either.
                        _ => return Outcome::Dropped,
                    }
                }
                StepInst::Window { window, .. } => {
                    let Some(n) = as_number(&v) else {
                        return Outcome::Failed("window: value is not a number".into());
                    };
                    let mut c = Vec::new();
                    window.add(ts, n, &mut c);
                    closed.extend(c.into_iter().map(|c| (i, c)));
                    return Outcome::Dropped;
                }
            }
        }
        Outcome::Value(v)
    }

    fn window_names(&self, step: usize) -> &[(weir_crds::gateway::Aggregate, String)] {
        match &self.steps[step] {
            StepInst::Window { names, .. } => names,
            _ => &[],
        }
    }
}

struct GroupRules {
    topic: Arc<str>,
    chains: Vec<Chain>,
    by_tag: HashMap<String, usize>,
    /// For the schema last seen: tag index → chain index.
    cache: Option<(Arc<GroupSchema>, Vec<Option<usize>>)>,
}

/// The compiled rules of one config. Built once per apply; replaced whole.
pub struct Pipeline {
    base: TopicBase,
    groups: HashMap<String, HashMap<String, GroupRules>>,
    stats: Arc<PipelineStats>,
    /// Topics of groups not in this config (samples in flight during a swap).
    other_topics: HashMap<(String, String), Arc<str>>,
}

fn tag_step(tag: &Tag) -> Option<StepInst> {
    if tag.scale.is_none() && tag.offset.is_none() && tag.decimals.is_none() {
        return None;
    }
    Some(StepInst::Round {
        scale: tag.scale.unwrap_or(1.0),
        offset: tag.offset.unwrap_or(0.0),
        decimals: tag.decimals.map(i32::from),
    })
}

fn compile_step(
    step: &Step,
    device: &str,
    group: &str,
    tag: &str,
    pipeline: &str,
    filters: &mut HashMap<String, Arc<filter::Compiled>>,
) -> Result<StepInst> {
    let err = |m: String| Error::Rule {
        rule: pipeline.into(),
        message: m,
    };
    if let Some(expr) = &step.filter {
        let compiled = match filters.get(expr) {
            Some(c) => c.clone(),
            None => {
                let c = filter::Compiled::new(expr).map_err(|e| err(e.to_string()))?;
                filters.insert(expr.clone(), c.clone());
                c
            }
        };
        return Ok(StepInst::Filter(Box::new(Filter::with(
            compiled, expr, device, group, tag,
        ))));
    }
    if let Some(s) = &step.scale {
        return Ok(StepInst::Scale {
            factor: s.factor,
            offset: s.offset,
        });
    }
    if let Some(d) = &step.deadband {
        return Ok(StepInst::Deadband(Deadband::new(d.absolute, d.percent)));
    }
    if let Some(r) = &step.report_on_change {
        return Ok(StepInst::ReportOnChange(ReportOnChange::new(
            r.heartbeat_ms,
        )));
    }
    if let Some(r) = &step.rate_of_change {
        return Ok(StepInst::RateOfChange {
            per_s: r.per_seconds,
            prev: None,
        });
    }
    if let Some(w) = &step.window {
        return Ok(StepInst::Window {
            window: Window::new(w.size_ms, w.hop_ms, w.aggregates.clone()),
            names: w
                .aggregates
                .iter()
                .map(|a| (*a, format!("{tag}_{}", aggregate_name(*a))))
                .collect(),
        });
    }
    Err(err(
        "a step must set one of filter, scale, deadband, reportOnChange, rateOfChange, window"
            .into(),
    ))
}

impl Pipeline {
    /// Compile every rule of `config`; any error refuses the whole config.
    pub fn compile(
        config: &GatewayConfig,
        base: TopicBase,
        stats: Arc<PipelineStats>,
    ) -> Result<Self> {
        let mut groups: HashMap<String, HashMap<String, GroupRules>> = HashMap::new();
        let mut filters: HashMap<String, Arc<filter::Compiled>> = HashMap::new();
        for d in &config.devices {
            for g in &d.groups {
                let mut chains = Vec::new();
                let mut by_tag = HashMap::new();
                for t in &g.tags {
                    let mut steps: Vec<StepInst> = tag_step(t).into_iter().collect();
                    for p in &config.pipelines {
                        let sel = &p.select;
                        if sel.device != d.name
                            || sel.group.as_ref().is_some_and(|x| x != &g.name)
                            || sel.tag.as_ref().is_some_and(|x| x != &t.name)
                        {
                            continue;
                        }
                        for s in &p.steps {
                            steps.push(compile_step(
                                s,
                                &d.name,
                                &g.name,
                                &t.name,
                                &p.name,
                                &mut filters,
                            )?);
                        }
                    }
                    if !steps.is_empty() {
                        by_tag.insert(t.name.clone(), chains.len());
                        chains.push(Chain {
                            tag: t.name.clone(),
                            steps,
                        });
                    }
                }
                groups.entry(d.name.clone()).or_default().insert(
                    g.name.clone(),
                    GroupRules {
                        topic: Arc::from(base.topic(&d.name, &g.name)),
                        chains,
                        by_tag,
                        cache: None,
                    },
                );
            }
        }
        Ok(Self {
            base,
            groups,
            stats,
            other_topics: HashMap::new(),
        })
    }

    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    fn fail(&self, device: &str, tag: &str, msg: &str) {
        let n = self.stats.rule_failures.fetch_add(1, Ordering::Relaxed);
        // Log the first failure and then every 10,000th, so a rule failing on
        // every reading cannot flood the log.
        if n.is_multiple_of(10_000) {
            tracing::warn!(
                device,
                tag,
                failures = n + 1,
                "rule failed on a reading: {msg}"
            );
        }
        if let Ok(mut g) = self.stats.last_rule_failure.lock() {
            if g.as_deref() != Some(msg) {
                *g = Some(format!("{device}/{tag}: {msg}"));
            }
        }
    }

    /// Run one sample through its chains; push the frames to queue.
    pub fn process(&mut self, sample: Sample, out: &mut Vec<PendingFrame>) {
        let schema = sample.schema.clone();
        let n_in = sample.readings() as u64;
        self.stats.readings_in.fetch_add(n_in, Ordering::Relaxed);
        let Some(rules) = self
            .groups
            .get_mut(&schema.device)
            .and_then(|g| g.get_mut(&schema.group))
        else {
            // A sample of a group this config does not have (read just before
            // a swap): pass it on unchanged rather than lose it.
            let key = (schema.device.clone(), schema.group.clone());
            let base = &self.base;
            let topic = self
                .other_topics
                .entry(key)
                .or_insert_with(|| Arc::from(base.topic(&schema.device, &schema.group)))
                .clone();
            let mut rest = String::with_capacity(32 + 24 * sample.values.len());
            render_rest(
                sample.ts_ms,
                sample
                    .values
                    .iter()
                    .map(|(i, v)| (schema.tags[*i as usize].as_str(), v)),
                sample
                    .errors
                    .iter()
                    .map(|(i, c)| (schema.tags[*i as usize].as_str(), *c)),
                &mut rest,
            );
            self.stats.readings_out.fetch_add(n_in, Ordering::Relaxed);
            out.push(PendingFrame {
                topic,
                readings: n_in as u32,
                rest,
            });
            return;
        };
        let fresh = !matches!(&rules.cache, Some((s, _)) if Arc::ptr_eq(s, &schema));
        if fresh {
            let map = schema
                .tags
                .iter()
                .map(|t| rules.by_tag.get(t).copied())
                .collect();
            rules.cache = Some((schema.clone(), map));
        }
        let map = &rules.cache.as_ref().expect("cache set").1;
        let mut values: Vec<(&str, TagValue)> = Vec::with_capacity(sample.values.len());
        let mut errors: Vec<(&str, i32)> = sample
            .errors
            .iter()
            .map(|(i, c)| (schema.tags[*i as usize].as_str(), *c))
            .collect();
        let mut closed: Vec<(usize, usize, Closed)> = Vec::new();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut filtered = 0u64;
        let mut tmp = Vec::new();
        for (idx, v) in sample.values {
            let name = schema.tags[idx as usize].as_str();
            match map.get(idx as usize).copied().flatten() {
                None => values.push((name, v)),
                Some(ci) => {
                    tmp.clear();
                    match rules.chains[ci].run(sample.ts_ms, v, &mut tmp) {
                        Outcome::Value(v) => values.push((name, v)),
                        Outcome::Dropped => filtered += 1,
                        Outcome::Failed(msg) => {
                            errors.push((name, ErrorCode::RuleFailed as i32));
                            failures.push((idx as usize, msg));
                        }
                    }
                    closed.extend(tmp.drain(..).map(|(step, c)| (ci, step, c)));
                }
            }
        }
        for (idx, msg) in &failures {
            let tag = schema.tags[*idx].clone();
            self.fail(&schema.device, &tag, msg);
        }
        let Some(rules) = self
            .groups
            .get(&schema.device)
            .and_then(|g| g.get(&schema.group))
        else {
            return;
        };
        self.stats
            .readings_filtered
            .fetch_add(filtered, Ordering::Relaxed);
        if !values.is_empty() || !errors.is_empty() {
            let n = (values.len() + errors.len()) as u32;
            let mut rest = String::with_capacity(32 + 24 * n as usize);
            render_rest(
                sample.ts_ms,
                values.iter().map(|(n, v)| (*n, v)),
                errors.into_iter(),
                &mut rest,
            );
            self.stats
                .readings_out
                .fetch_add(u64::from(n), Ordering::Relaxed);
            out.push(PendingFrame {
                topic: rules.topic.clone(),
                readings: n,
                rest,
            });
        }
        emit_closed(rules, closed, &self.stats, out);
    }

    /// Close windows that ended before `now_ms` (readings stopped coming).
    pub fn flush(&mut self, now_ms: i64, out: &mut Vec<PendingFrame>) {
        for groups in self.groups.values_mut() {
            for rules in groups.values_mut() {
                let mut closed = Vec::new();
                for (ci, chain) in rules.chains.iter_mut().enumerate() {
                    for (si, step) in chain.steps.iter_mut().enumerate() {
                        if let StepInst::Window { window, .. } = step {
                            let mut c = Vec::new();
                            window.close_until(now_ms, &mut c);
                            closed.extend(c.into_iter().map(|c| (ci, si, c)));
                        }
                    }
                }
                emit_closed(rules, closed, &self.stats, out);
            }
        }
    }
}

/// Window results go out in frames of their own, one per window end, so a
/// name appears at most once per frame.
fn emit_closed(
    rules: &GroupRules,
    mut closed: Vec<(usize, usize, Closed)>,
    stats: &PipelineStats,
    out: &mut Vec<PendingFrame>,
) {
    if closed.is_empty() {
        return;
    }
    closed.sort_by_key(|(_, _, c)| c.end);
    let mut i = 0;
    while i < closed.len() {
        let end = closed[i].2.end;
        let mut vals: Vec<(&str, TagValue)> = Vec::new();
        while i < closed.len() && closed[i].2.end == end {
            let (ci, si, c) = &closed[i];
            let names = rules.chains[*ci].window_names(*si);
            for ((agg, v), (_, name)) in c.values.iter().zip(names) {
                let v = match agg {
                    weir_crds::gateway::Aggregate::Count => TagValue::Int(*v as i64),
                    _ => TagValue::Float(*v),
                };
                vals.push((name.as_str(), v));
            }
            let _ = &rules.chains[*ci].tag;
            i += 1;
        }
        let mut rest = String::new();
        render_rest(
            end,
            vals.iter().map(|(n, v)| (*n, v)),
            std::iter::empty(),
            &mut rest,
        );
        stats
            .readings_out
            .fetch_add(vals.len() as u64, Ordering::Relaxed);
        out.push(PendingFrame {
            topic: rules.topic.clone(),
            readings: vals.len() as u32,
            rest,
        });
    }
}

#[cfg(test)]
mod tests;
