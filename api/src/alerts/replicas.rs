//! Several api replicas on one PostgreSQL database split the alert work by
//! tenant, so that every series is evaluated in one place and every alert
//! is notified once.
//!
//! - **Ownership** ([`Coordinator`]): each replica holds a session-level
//!   advisory lock that says it is alive (`(MEMBER_NS, random key)`), and
//!   one advisory lock per tenant it evaluates (`(TENANT_NS, hash(tenant))`)
//!   on a connection of its own. Every pass it counts the live replicas and
//!   keeps at most its fair share of the tenants with rules
//!   (`ceil(tenants / replicas)`), giving away extras and trying free ones.
//!   Only the owner subscribes to a tenant's readings, evaluates its rules
//!   and sends its notices.
//! - **Hand-over**: a tenant given away stops being evaluated at once, but
//!   its lock is held until its notices in flight are delivered and logged
//!   (at most [`MAX_HOLD`], so a failing receiver does not leave the tenant
//!   unevaluated for its whole retry schedule); the next owner restores the
//!   persisted states and notification log, so nothing fires or notifies
//!   twice. A replica that dies closes its connection and PostgreSQL frees
//!   its locks (TCP keepalives on that session bound the wait to about 25 s
//!   when its host vanishes). A replica whose pass fails or hangs (database
//!   unreachable) stops evaluating within one pass and its 5 s timeout,
//!   before PostgreSQL gives its locks to anyone else.
//! - **Signals** ([`announce`], [`listen`]): fleet-health events, rule,
//!   channel and silence changes and cluster changes happen on whichever
//!   replica served the request; they are handled there at once and sent to
//!   the others with `NOTIFY weir_alerts`. After a lost listen connection a
//!   replica reloads everything, as nothing it missed can be replayed.
//!
//! SQLite is one process: the single replica owns every tenant.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgListener};
use sea_orm::sqlx::{self, ConnectOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Alerts;
use crate::fleet_events::{gateway_devices, FleetEvent};

/// First key of the "this replica is alive" advisory locks ("WEIR").
const MEMBER_NS: i32 = 0x5745_4952;
/// First key of the per-tenant advisory locks.
const TENANT_NS: i32 = MEMBER_NS + 1;
/// The `NOTIFY` channel.
pub const CHANNEL: &str = "weir_alerts";
/// PostgreSQL refuses `NOTIFY` payloads from 8000 bytes on.
const MAX_PAYLOAD: usize = 7900;
/// The longest a tenant given away waits for its notices in flight.
pub const MAX_HOLD: Duration = Duration::from_secs(15);

/// The lock key of a tenant (tenants that share one move together).
pub fn tenant_key(tenant: &str) -> i32 {
    let d = Sha256::digest(tenant.as_bytes());
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Which tenants this replica evaluates.
pub enum Coordinator {
    /// SQLite: one process owns everything.
    Single,
    Postgres(Box<PgCoordinator>),
}

pub struct PgCoordinator {
    opts: PgConnectOptions,
    conn: Option<PgConnection>,
    member: Option<i32>,
    owned: BTreeSet<i32>,
    /// Given away but still locked (since when): notices for them are in flight.
    releasing: BTreeMap<i32, Instant>,
    /// Live replicas at the last pass.
    replicas: i64,
}

impl Coordinator {
    pub fn new(db: &DatabaseConnection) -> Self {
        match db {
            DatabaseConnection::SqlxPostgresPoolConnection(_) => {
                // A replica whose host vanishes (no FIN) loses its locks in
                // about 10 + 3 x 5 s instead of the kernel's two hours.
                let opts = (*db.get_postgres_connection_pool().connect_options())
                    .clone()
                    .application_name("weir-api-alerts")
                    .options([
                        ("tcp_keepalives_idle", "10"),
                        ("tcp_keepalives_interval", "5"),
                        ("tcp_keepalives_count", "3"),
                    ]);
                Coordinator::Postgres(Box::new(PgCoordinator {
                    opts,
                    conn: None,
                    member: None,
                    owned: BTreeSet::new(),
                    releasing: BTreeMap::new(),
                    replicas: 0,
                }))
            }
            _ => Coordinator::Single,
        }
    }

    pub fn is_single(&self) -> bool {
        matches!(self, Coordinator::Single)
    }

    /// Live replicas (1 for SQLite).
    pub fn replicas(&self) -> i64 {
        match self {
            Coordinator::Single => 1,
            Coordinator::Postgres(c) => c.replicas,
        }
    }

    /// One ownership pass over `tenants` (every tenant with rules): the
    /// tenants this replica evaluates from now on. `busy` says whether a
    /// tenant has notices in flight (a tenant given away keeps its lock
    /// until they are done). On an error it owns nothing (it cannot tell
    /// whether its locks still hold).
    pub async fn assign(
        &mut self,
        tenants: &BTreeSet<String>,
        busy: impl Fn(&str) -> bool,
    ) -> BTreeSet<String> {
        let c = match self {
            Coordinator::Single => return tenants.clone(),
            Coordinator::Postgres(c) => c,
        };
        let keys: BTreeMap<i32, Vec<&String>> = tenants.iter().fold(BTreeMap::new(), |mut m, t| {
            m.entry(tenant_key(t)).or_insert_with(Vec::new).push(t);
            m
        });
        let busy: BTreeSet<i32> = keys
            .iter()
            .filter(|(_, ts)| ts.iter().any(|t| busy(t)))
            .map(|(k, _)| *k)
            .collect();
        let res = tokio::time::timeout(Duration::from_secs(5), c.pass(&keys, &busy)).await;
        match res {
            Ok(Ok(())) => c
                .owned
                .iter()
                .filter_map(|k| keys.get(k))
                .flatten()
                .map(|t| (*t).clone())
                .collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "alerts: replica coordination failed; evaluating nothing until it works again");
                c.reset();
                BTreeSet::new()
            }
            Err(_) => {
                tracing::warn!("alerts: replica coordination timed out; evaluating nothing until it works again");
                c.reset();
                BTreeSet::new()
            }
        }
    }
}

impl PgCoordinator {
    /// Forget the connection (closing it frees every lock it held).
    fn reset(&mut self) {
        self.conn = None;
        self.member = None;
        self.owned.clear();
        self.releasing.clear();
    }

    async fn unlock(conn: &mut PgConnection, k: i32) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(TENANT_NS)
            .bind(k)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn pass(
        &mut self,
        keys: &BTreeMap<i32, Vec<&String>>,
        busy: &BTreeSet<i32>,
    ) -> Result<(), sqlx::Error> {
        if self.conn.is_none() {
            self.reset();
            self.conn = Some(self.opts.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        while self.member.is_none() {
            let k: i32 = rand::random();
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(MEMBER_NS)
                .bind(k)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                self.member = Some(k);
            }
        }
        let replicas: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 2 AND classid::bigint = $1 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(MEMBER_NS as i64)
        .fetch_one(&mut *conn)
        .await?;
        self.replicas = replicas.max(1);
        let fair = keys.len().div_ceil(self.replicas as usize);
        // Tenants without rules any more go at once; given-away ones once
        // nothing is in flight for them.
        let free: Vec<i32> = self
            .owned
            .iter()
            .filter(|k| !keys.contains_key(k))
            .chain(
                self.releasing
                    .iter()
                    .filter(|(k, since)| {
                        !keys.contains_key(k) || !busy.contains(k) || since.elapsed() > MAX_HOLD
                    })
                    .map(|(k, _)| k),
            )
            .copied()
            .collect();
        for k in free {
            Self::unlock(conn, k).await?;
            self.owned.remove(&k);
            self.releasing.remove(&k);
        }
        // What is above the fair share is given away.
        let extra: Vec<i32> = self
            .owned
            .iter()
            .rev()
            .take(self.owned.len().saturating_sub(fair))
            .copied()
            .collect();
        for k in extra {
            self.owned.remove(&k);
            if busy.contains(&k) {
                self.releasing.insert(k, Instant::now());
            } else {
                Self::unlock(conn, k).await?;
            }
        }
        for k in keys.keys() {
            if self.owned.len() >= fair {
                break;
            }
            if self.owned.contains(k) {
                continue;
            }
            // Still locked by this session (locks stack: never take one twice).
            if self.releasing.remove(k).is_some() {
                self.owned.insert(*k);
                continue;
            }
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(TENANT_NS)
                .bind(*k)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                self.owned.insert(*k);
            }
        }
        Ok(())
    }
}

/// What one replica tells the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// Rules, channels or silences changed.
    Reload,
    /// An alert was acknowledged or shelved.
    Acks,
    /// Clusters were created, changed or deleted.
    Clusters,
    /// Gateways were created, changed or deleted (their projects).
    Gateways,
    Fleet {
        event: FleetEvent,
    },
    /// A heartbeat's device report too large for a `NOTIFY`: read it from
    /// the gateway's row.
    GatewayStatus {
        project: Uuid,
        gateway: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    from: Uuid,
    #[serde(flatten)]
    signal: S,
}

fn encode(from: Uuid, signal: &Signal) -> Option<String> {
    let s = serde_json::to_string(&Envelope { from, signal }).ok()?;
    if s.len() <= MAX_PAYLOAD {
        return Some(s);
    }
    match signal {
        Signal::Fleet {
            event: FleetEvent::Devices {
                project, gateway, ..
            },
        } => serde_json::to_string(&Envelope {
            from,
            signal: Signal::GatewayStatus {
                project: *project,
                gateway: gateway.clone(),
            },
        })
        .ok(),
        _ => None,
    }
}

/// Send a signal to the other replicas (PostgreSQL only; no-op on SQLite).
pub async fn announce(db: &DatabaseConnection, from: Uuid, signal: Signal) {
    if !matches!(db, DatabaseConnection::SqlxPostgresPoolConnection(_)) {
        return;
    }
    let Some(payload) = encode(from, &signal) else {
        tracing::error!("alerts: a signal to the other replicas does not fit a NOTIFY");
        return;
    };
    let stmt = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    );
    if let Err(e) = db.execute(stmt).await {
        tracing::warn!(error = %e, "alerts: telling the other replicas failed");
    }
}

/// Receive the other replicas' signals for as long as the api runs.
pub async fn listen(alerts: Alerts) {
    let db = alerts.inner.db.clone();
    if !matches!(db, DatabaseConnection::SqlxPostgresPoolConnection(_)) {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    let mut first = true;
    loop {
        let mut l = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot listen for the other replicas; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = l.listen(CHANNEL).await {
            tracing::warn!(error = %e, "alerts: LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !first {
            // Signals sent while the connection was down are lost: read everything again.
            alerts.reload_local().await;
            alerts.clusters_changed_local();
        }
        first = false;
        loop {
            match l.try_recv().await {
                Ok(Some(n)) => dispatch(&alerts, n.payload()).await,
                Ok(None) => {
                    tracing::warn!("alerts: the listen connection was lost; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: listening failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn dispatch(alerts: &Alerts, payload: &str) {
    let env: Envelope<Signal> = match serde_json::from_str(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: unreadable signal from another replica");
            return;
        }
    };
    if env.from == alerts.inner.id {
        return;
    }
    match env.signal {
        Signal::Reload => alerts.reload_local().await,
        Signal::Acks => alerts.acks_changed_local().await,
        Signal::Clusters => alerts.clusters_changed_local(),
        Signal::Gateways => alerts.gateways_changed_local().await,
        Signal::Fleet { event } => alerts.fleet_event_local(event).await,
        Signal::GatewayStatus { project, gateway } => {
            match gateway_devices(&alerts.inner.db, project, &gateway).await {
                Ok(Some(ev)) => alerts.fleet_event_local(ev).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "alerts: reading a gateway's devices failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_device_report_travels_as_a_pointer_to_the_gateway_row() {
        let project = Uuid::new_v4();
        let devices: Vec<(String, bool)> = (0..2000).map(|i| (format!("pump-{i}"), true)).collect();
        let big = Signal::Fleet {
            event: FleetEvent::Devices {
                project,
                gateway: "riverside".into(),
                devices,
            },
        };
        let s = encode(Uuid::nil(), &big).expect("encoded");
        assert!(s.len() <= MAX_PAYLOAD);
        let env: Envelope<Signal> = serde_json::from_str(&s).unwrap();
        assert_eq!(
            env.signal,
            Signal::GatewayStatus {
                project,
                gateway: "riverside".into()
            }
        );
        let small = Signal::Fleet {
            event: FleetEvent::GatewayOffline {
                project,
                gateway: "riverside".into(),
            },
        };
        let env: Envelope<Signal> =
            serde_json::from_str(&encode(Uuid::nil(), &small).unwrap()).unwrap();
        assert_eq!(env.signal, small);
    }

    #[test]
    fn tenant_keys_are_stable() {
        // Replicas of different builds must agree on a tenant's lock: the
        // first four bytes of SHA-256, big-endian.
        assert_eq!(tenant_key("riverside"), 313_435_636);
        assert_ne!(tenant_key("riverside"), tenant_key("lakeside"));
    }
}
