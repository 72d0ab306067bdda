//! The newest reading of every tag of one gateway, for the console's live
//! table: `GET /api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/latest`.
//!
//! The tags are those of the gateway's current config version (with the
//! unit and decimals the console formats values with); each one's newest
//! reading comes from the historian's `readings` in one query for the whole
//! gateway ([`LATEST_SQL`], which says what it costs). Rows are found as
//! `/series` finds them: `tenant` = the organization's slug, `gateway` =
//! the gateway's name (see [`super::series`]).
//!
//! Device health, queue depth and dropped readings are not repeated here:
//! they are the agent's heartbeat, already in the gateway's `agent_status`
//! (`GET …/gateways/{gateway}`), which the console shows next to this.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use sea_orm::sqlx::Row;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use weir_crds::message::ErrorCode;

use super::gateways::{current_specs, find_gateway};
use super::series::{historian_error, Historian};

use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub use weir_crds::historian::LATEST_SQL;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_latest))
}

/// The newest reading of each tag of a gateway's current config.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestValues {
    pub gateway: String,
    /// The config version whose devices and tags are listed (0: the
    /// gateway has no config yet).
    pub version: i64,
    /// Devices in config order, each with its tags in config order (all
    /// groups of the device together).
    pub devices: Vec<DeviceLatest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceLatest {
    pub name: String,
    pub tags: Vec<TagLatest>,
}

/// One tag and its newest reading (all reading fields null when the
/// historian holds none).
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct TagLatest {
    pub name: String,
    /// The tag's `dataType` in the config (e.g. `float32`, `bool`).
    pub data_type: String,
    /// The tag's unit in the config, if any.
    pub unit: Option<String>,
    /// Decimals the config rounds the value to, if any: show it with as many.
    pub decimals: Option<u8>,
    /// The tag has the `write` attribute: operators may write setpoints to
    /// it (`POST …/writes`).
    pub writable: bool,
    /// Lowest value a write may set, if the config limits it.
    pub write_min: Option<f64>,
    /// Highest value a write may set, if the config limits it.
    pub write_max: Option<f64>,
    /// When the newest reading was taken (the agent's read time).
    pub ts: Option<DateTime<Utc>>,
    /// Its number (bools as 1 or 0); null for text, errors and no reading.
    pub value: Option<f64>,
    /// Its text, for text tags (and the exact digits of an integer beyond ±2^53).
    pub value_text: Option<String>,
    /// Set when the newest reading is a read error rather than a value.
    pub error: Option<ReadError>,
}

/// A read error as the agent reported it.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct ReadError {
    /// The agent's error code (e.g. 1001).
    pub code: i32,
    /// What the code means.
    pub meaning: String,
}

impl ReadError {
    fn of(code: i32) -> Self {
        let meaning = ErrorCode::from_code(code).map_or_else(
            || format!("error code {code}, unknown to this version of Weir"),
            |c| c.meaning().to_string(),
        );
        ReadError { code, meaning }
    }
}

/// The part of a stored `EdgeGatewaySpec` this needs. Read leniently: a
/// stored version is never re-validated, and a field this does not know
/// must not hide the table.
#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    devices: Vec<SpecDevice>,
}

#[derive(Deserialize)]
struct SpecDevice {
    name: String,
    #[serde(default)]
    groups: Vec<SpecGroup>,
}

#[derive(Deserialize)]
struct SpecGroup {
    #[serde(default)]
    tags: Vec<SpecTag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecTag {
    name: String,
    #[serde(default)]
    data_type: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    decimals: Option<u8>,
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(default)]
    write_min: Option<f64>,
    #[serde(default)]
    write_max: Option<f64>,
}

/// The devices and tags of a config, readings still empty.
fn tags_of(spec: Spec) -> Vec<DeviceLatest> {
    spec.devices
        .into_iter()
        .map(|d| DeviceLatest {
            name: d.name,
            tags: d
                .groups
                .into_iter()
                .flat_map(|g| g.tags)
                .map(|t| TagLatest {
                    name: t.name,
                    data_type: t.data_type,
                    unit: t.unit,
                    decimals: t.decimals,
                    writable: t.attributes.iter().any(|a| a == "write"),
                    write_min: t.write_min,
                    write_max: t.write_max,
                    ts: None,
                    value: None,
                    value_text: None,
                    error: None,
                })
                .collect(),
        })
        .collect()
}

/// The newest reading of a tag: `(ts, value, value_text, quality)`.
pub type Newest = (DateTime<Utc>, Option<f64>, Option<String>, i32);

impl Historian {
    /// Run [`LATEST_SQL`] for these `(device, tag)` pairs; one answer per
    /// pair, in order (`None`: never read).
    pub async fn latest(
        &self,
        tenant: &str,
        gateway: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<Option<Newest>>, ApiError> {
        let pool = self.pool()?;
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (devices, tags): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
        let rows = sqlx::query(LATEST_SQL)
            .bind(tenant)
            .bind(gateway)
            .bind(devices)
            .bind(tags)
            .fetch_all(pool)
            .await
            .map_err(historian_error)?;
        rows.iter()
            .map(|r| {
                let ts: Option<DateTime<Utc>> = r.try_get(2)?;
                Ok(match ts {
                    None => None,
                    Some(ts) => Some((ts, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::internal)
    }
}

/// Put each tag's newest reading (in the order of [`tags_of`]) in place.
fn fill(devices: &mut [DeviceLatest], newest: Vec<Option<Newest>>) {
    let slots = devices.iter_mut().flat_map(|d| d.tags.iter_mut());
    for (t, n) in slots.zip(newest) {
        let Some((ts, value, value_text, quality)) = n else {
            continue;
        };
        t.ts = Some(ts);
        t.value = value;
        t.value_text = value_text;
        t.error = (quality != 0).then(|| ReadError::of(quality));
    }
}

/// The newest reading of every tag of the gateway, from the historian.
///
/// One entry per device and tag of the gateway's current config version,
/// with the tag's unit and decimals, and its newest reading in the
/// historian's `readings`: time, value, and the agent's error code with
/// its meaning when that reading is a read error. Tags never read have
/// null readings. Any member of the project may read it. 503 when the api
/// has no historian database (`WEIR_HISTORIAN_URL`) or cannot reach it.
/// Device health, queue depth and dropped readings are in the gateway's
/// `agent_status`.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/latest", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)),
    responses((status = 200, body = LatestValues),
        (status = 503, description = "No historian database configured, or it is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
        ProblemResponses))]
async fn get_latest(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<Json<LatestValues>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess { org: o, .. } = at;
    let spec = match current_specs(&st.db, &[(g.id, g.config_version)])
        .await?
        .remove(&g.id)
    {
        Some(s) => serde_json::from_str::<Spec>(s.raw.get()).map_err(ApiError::internal)?,
        None => Spec::default(),
    };
    let mut devices = tags_of(spec);
    let pairs: Vec<(&str, &str)> = devices
        .iter()
        .flat_map(|d| d.tags.iter().map(|t| (d.name.as_str(), t.name.as_str())))
        .collect();
    let newest = st.fleet.historian.latest(&o.slug, &g.slug, &pairs).await?;
    fill(&mut devices, newest);
    Ok(Json(LatestValues {
        gateway: g.slug,
        version: g.config_version,
        devices,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<DeviceLatest> {
        tags_of(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn tags_come_from_every_group_in_config_order() {
        let d = spec(
            r#"{"site":{"name":"x"},"devices":[
                {"name":"pump","adapter":"simulator","groups":[
                    {"name":"fast","intervalMs":100,"tags":[{"name":"flow","address":"a","dataType":"float32","unit":"m3/h","decimals":1}]},
                    {"name":"slow","intervalMs":1000,"tags":[{"name":"run","address":"b","dataType":"bool","attributes":["read","write"]}]}]},
                {"name":"empty","adapter":"simulator"}],
              "uplink":{}}"#,
        );
        assert_eq!(d.len(), 2);
        let names: Vec<_> = d[0].tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["flow", "run"]);
        assert_eq!(d[0].tags[0].unit.as_deref(), Some("m3/h"));
        assert_eq!(d[0].tags[0].decimals, Some(1));
        assert_eq!(d[0].tags[1].data_type, "bool");
        assert!(!d[0].tags[0].writable && d[0].tags[1].writable);
        assert!(d[1].tags.is_empty());
        assert!(spec("{}").is_empty());
    }

    #[test]
    fn readings_land_on_their_tags_and_errors_get_words() {
        let mut d = spec(
            r#"{"devices":[{"name":"a","groups":[{"tags":[{"name":"x","dataType":"int16"},{"name":"y","dataType":"int16"}]}]},
                           {"name":"b","groups":[{"tags":[{"name":"z","dataType":"string"}]}]}]}"#,
        );
        let ts = Utc::now();
        fill(
            &mut d,
            vec![
                Some((ts, Some(4.0), None, 0)),
                None,
                Some((ts, None, None, 1001)),
            ],
        );
        assert_eq!(d[0].tags[0].value, Some(4.0));
        assert_eq!(d[0].tags[0].error, None);
        assert_eq!(d[0].tags[1].ts, None);
        let e = d[1].tags[0].error.as_ref().unwrap();
        assert_eq!(e.code, 1001);
        assert_eq!(e.meaning, "the device did not answer in time");
        assert!(ReadError::of(4242).meaning.contains("4242"));
    }
}
