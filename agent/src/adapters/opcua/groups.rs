//! A device's groups on an open session: polled groups with the Read
//! service, subscribed ones with a subscription each; and writes.

use std::sync::Arc;
use std::time::Duration;

use opcua::client::{MonitoredItemMap, OnSubscriptionNotificationCore, Session};
use opcua::types::{
    AttributeId, DataChangeFilter, DataChangeNotification, DataChangeTrigger, DataValue,
    DeadbandType, ExtensionObject, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NodeId as UaNodeId, NotificationMessage, NumericRange, ReadValueId,
    TimestampsToReturn, WriteValue,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_crds::gateway::{DataType, Device, GroupMode};
use weir_crds::message::{ErrorCode, TagValue, WriteRequest};

use super::errors::{code_of, describe};
use super::values::{from_variant, node_id, to_variant};
use crate::sample::{now_ms, GroupSchema, Sample};

pub struct PlannedTag {
    pub index: u16,
    pub node: UaNodeId,
    pub data_type: DataType,
}

pub struct GroupPlan {
    pub schema: Arc<GroupSchema>,
    pub mode: GroupMode,
    pub every: Duration,
    pub next: Instant,
    pub deadband: Option<f64>,
    pub tags: Vec<PlannedTag>,
    /// Tags whose address is not a node id (validation should prevent this).
    pub bad: Vec<u16>,
    /// Why a tag of the group failed last time, for the device's health.
    pub error: Option<String>,
}

pub fn plan(device: &Device) -> Vec<GroupPlan> {
    let now = Instant::now();
    device
        .groups
        .iter()
        .map(|g| {
            let mut tags = Vec::new();
            let mut bad = Vec::new();
            for (i, t) in g.tags.iter().enumerate() {
                match node_id(&t.address) {
                    Ok(node) => tags.push(PlannedTag {
                        index: i as u16,
                        node,
                        data_type: t.data_type,
                    }),
                    Err(e) => {
                        tracing::warn!(device = %device.name, tag = %t.name, "bad node id: {e}");
                        bad.push(i as u16);
                    }
                }
            }
            GroupPlan {
                schema: Arc::new(GroupSchema {
                    device: device.name.clone(),
                    group: g.name.clone(),
                    tags: g.tags.iter().map(|t| t.name.clone()).collect(),
                }),
                mode: g.mode(),
                every: Duration::from_millis(u64::from(g.interval_ms.max(1))),
                next: now,
                deadband: g.deadband,
                tags,
                bad,
                error: None,
            }
        })
        .collect()
}

/// One tag's reading: its value, or an error code and why.
pub fn reading(dv: &DataValue, dt: DataType) -> Result<TagValue, (ErrorCode, String)> {
    if let Some(s) = dv.status.filter(|s| s.is_bad()) {
        return Err((code_of(s), describe(s)));
    }
    let v = dv
        .value
        .as_ref()
        .ok_or((ErrorCode::Decode, "the server sent no value".to_string()))?;
    from_variant(v, dt).map_err(|e| (ErrorCode::Decode, e))
}

fn ts_ms(dv: &DataValue) -> Option<i64> {
    dv.source_timestamp
        .or(dv.server_timestamp)
        .map(|t| t.as_chrono().timestamp_millis())
}

/// Every tag of a group as failed with `code` (the session is down).
pub fn failed_sample(g: &GroupPlan, code: ErrorCode) -> Sample {
    let errors = (0..g.schema.tags.len() as u16)
        .map(|i| (i, code as i32))
        .collect();
    Sample {
        schema: g.schema.clone(),
        ts_ms: now_ms(),
        values: Vec::new(),
        errors,
    }
}

/// Read a polled group's tags in one Read call. `Err` when the service
/// call itself failed (the session is likely gone).
pub async fn poll(
    session: &Session,
    g: &GroupPlan,
    timeout: Duration,
) -> Result<(Sample, Option<String>), String> {
    let ids: Vec<ReadValueId> = g.tags.iter().map(|t| ReadValueId::from(&t.node)).collect();
    let ts = now_ms();
    let mut values = Vec::new();
    let mut errors: Vec<(u16, i32)> = g
        .bad
        .iter()
        .map(|i| (*i, ErrorCode::NodeUnknown as i32))
        .collect();
    let mut first_err = None;
    if !ids.is_empty() {
        let results = tokio::time::timeout(
            timeout,
            session.read(&ids, TimestampsToReturn::Neither, 0.0),
        )
        .await
        .map_err(|_| format!("read: no answer within {} ms", timeout.as_millis()))?
        .map_err(|e| format!("read: {e}"))?;
        for (t, dv) in g.tags.iter().zip(results.iter()) {
            match reading(dv, t.data_type) {
                Ok(v) => values.push((t.index, v)),
                Err((code, why)) => {
                    errors.push((t.index, code as i32));
                    first_err.get_or_insert_with(|| tag_error(g, t.index, &why));
                }
            }
        }
    }
    Ok((
        Sample {
            schema: g.schema.clone(),
            ts_ms: ts,
            values,
            errors,
        },
        first_err,
    ))
}

fn tag_error(g: &GroupPlan, index: u16, why: &str) -> String {
    let name = g
        .schema
        .tags
        .get(index as usize)
        .map_or("?", |s| s.as_str());
    format!("tag '{name}': {why}")
}

/// Data changes of one subscription, as (group, [(tag index, value)]).
pub type Changes = (usize, Vec<(u16, DataValue)>);

/// Hands each notification of a group's subscription to the device task.
/// The stack calls it synchronously; the channel is unbounded so a slow
/// pipeline never stalls the session's publish loop (the device task
/// drains it as fast as the pipeline takes samples).
struct Notifier {
    group: usize,
    tx: mpsc::UnboundedSender<Changes>,
}

impl OnSubscriptionNotificationCore for Notifier {
    fn on_subscription_notification(
        &mut self,
        notification: NotificationMessage,
        _items: MonitoredItemMap<'_>,
    ) {
        for obj in notification.notification_data.into_iter().flatten() {
            let Some(dc) = obj.into_inner_as::<DataChangeNotification>() else {
                continue;
            };
            let changes: Vec<(u16, DataValue)> = dc
                .monitored_items
                .into_iter()
                .flatten()
                // Client handles are tag index + 1 (0 means "assign one").
                .filter_map(|n| {
                    Some((
                        u16::try_from(n.client_handle.checked_sub(1)?).ok()?,
                        n.value,
                    ))
                })
                .collect();
            if !changes.is_empty() {
                let _ = self.tx.send((self.group, changes));
            }
        }
    }
}

/// Create the subscription of a subscribed group; returns per-tag errors
/// (a node the server refused to monitor) as a first sample, if any.
pub async fn subscribe(
    session: &Session,
    index: usize,
    g: &GroupPlan,
    tx: mpsc::UnboundedSender<Changes>,
    timeout: Duration,
) -> Result<Option<(Sample, String)>, String> {
    let interval = g.every;
    let id = tokio::time::timeout(
        timeout,
        session.create_subscription(
            interval,
            // Lifetime and keep-alive counts in publishing intervals: the
            // server keeps the subscription ~30 intervals (at least 10 s)
            // without a publish request.
            ((10_000 / interval.as_millis().max(1)) as u32).max(30),
            ((3_000 / interval.as_millis().max(1)) as u32).max(3),
            0,
            0,
            true,
            Notifier { group: index, tx },
        ),
    )
    .await
    .map_err(|_| "create subscription: no answer in time".to_string())?
    .map_err(|e| format!("create subscription: {e}"))?;
    let filter = match g.deadband {
        Some(d) if d > 0.0 => ExtensionObject::from_message(DataChangeFilter {
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: DeadbandType::Absolute as u32,
            deadband_value: d,
        }),
        _ => ExtensionObject::null(),
    };
    let items: Vec<MonitoredItemCreateRequest> = g
        .tags
        .iter()
        .map(|t| {
            MonitoredItemCreateRequest::new(
                ReadValueId {
                    node_id: t.node.clone(),
                    attribute_id: AttributeId::Value as u32,
                    index_range: NumericRange::None,
                    data_encoding: Default::default(),
                },
                MonitoringMode::Reporting,
                MonitoringParameters {
                    client_handle: u32::from(t.index) + 1,
                    sampling_interval: interval.as_millis() as f64,
                    filter: filter.clone(),
                    // Changes sampled between two publishes are all kept.
                    queue_size: 10,
                    discard_oldest: true,
                },
            )
        })
        .collect();
    let results = tokio::time::timeout(
        timeout,
        session.create_monitored_items(id, TimestampsToReturn::Both, items),
    )
    .await
    .map_err(|_| "create monitored items: no answer in time".to_string())?
    .map_err(|e| format!("create monitored items: {e}"))?;
    let mut errors: Vec<(u16, i32)> = g
        .bad
        .iter()
        .map(|i| (*i, ErrorCode::NodeUnknown as i32))
        .collect();
    let mut first = None;
    for (t, r) in g.tags.iter().zip(results.iter()) {
        let s = r.result.status_code;
        if s.is_bad() {
            errors.push((t.index, code_of(s) as i32));
            first.get_or_insert_with(|| tag_error(g, t.index, &describe(s)));
        }
    }
    Ok((!errors.is_empty()).then(|| {
        (
            Sample {
                schema: g.schema.clone(),
                ts_ms: now_ms(),
                values: Vec::new(),
                errors,
            },
            first.unwrap_or_else(|| "a tag's address is not a node id".into()),
        )
    }))
}

/// Samples of one notification: a tag reported twice (queued changes)
/// starts a new sample, so every change is published.
pub fn change_samples(g: &GroupPlan, changes: Vec<(u16, DataValue)>) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut cur: Option<Sample> = None;
    for (index, dv) in changes {
        let Some(t) = g.tags.iter().find(|t| t.index == index) else {
            continue;
        };
        let seen = cur.as_ref().is_some_and(|s| {
            s.values.iter().any(|(i, _)| *i == index) || s.errors.iter().any(|(i, _)| *i == index)
        });
        if seen {
            out.extend(cur.take());
        }
        let s = cur.get_or_insert_with(|| Sample {
            schema: g.schema.clone(),
            ts_ms: ts_ms(&dv).unwrap_or_else(now_ms),
            values: Vec::new(),
            errors: Vec::new(),
        });
        match reading(&dv, t.data_type) {
            Ok(v) => s.values.push((index, v)),
            Err((code, _)) => s.errors.push((index, code as i32)),
        }
    }
    out.extend(cur);
    out
}

/// Apply one write with the Write service; the server's status decides.
pub async fn write(
    session: &Session,
    device: &Device,
    req: &WriteRequest,
    timeout: Duration,
) -> Result<(), String> {
    let tag = crate::adapters::writable_tag(device, req)?;
    let node = node_id(&tag.address)?;
    let value = to_variant(&req.value, tag)?;
    let wv = WriteValue {
        node_id: node,
        attribute_id: AttributeId::Value as u32,
        index_range: NumericRange::None,
        value: DataValue::value_only(value),
    };
    let results = tokio::time::timeout(timeout, session.write(&[wv]))
        .await
        .map_err(|_| format!("write: no answer within {} ms", timeout.as_millis()))?
        .map_err(|e| format!("write: {e}"))?;
    match results.first() {
        Some(s) if s.is_good() => Ok(()),
        Some(s) => Err(format!("the server refused the write: {}", describe(*s))),
        None => Err("the server answered the write without a status".into()),
    }
}
