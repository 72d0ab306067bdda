//! Writing a round's status, and the event when its phase changes.
//!
//! Connection counts move all the time. Writing them on every reconcile
//! would make each status write trigger the next (a hot loop); they are
//! refreshed with any other change, or once per refresh interval.

use std::time::Duration;

use kube::runtime::events::EventType;
use kube::Api;
use weir_crds::MqttCluster;

use super::findings::Findings;
use super::reconcile::key;
use super::status;
use crate::apply::sync_status;
use crate::context::Context;
use crate::error::Result;

pub(super) async fn publish(
    c: &MqttCluster,
    ctx: &Context,
    api: &Api<MqttCluster>,
    f: &Findings,
    observed: status::Observed,
) -> Result<()> {
    let (mut status, phase) = status::build(c, f, observed);
    if let Some(previous) = &c.status {
        let mut counts_kept = status.clone();
        for n in &mut counts_kept.nodes {
            if let Some(o) = previous.nodes.iter().find(|o| o.name == n.name) {
                n.connections = o.connections;
            }
        }
        let refresh = Duration::from_secs(ctx.config.status_refresh_secs);
        if &counts_kept == previous && !ctx.due(&key(c), refresh) {
            status = counts_kept;
        }
    }
    let wrote = sync_status(api, c, c.status.as_ref(), &status).await?;
    if !wrote {
        return Ok(());
    }
    ctx.mark(&key(c));
    let old_phase = c.status.as_ref().and_then(|s| s.phase.as_deref());
    if old_phase != Some(phase) {
        let (t, msg) = if phase == "Degraded" {
            (EventType::Warning, status::join(&f.degraded))
        } else {
            (EventType::Normal, format!("cluster is {phase}"))
        };
        ctx.event(c, t, phase, "Reconcile", msg).await;
    }
    Ok(())
}
