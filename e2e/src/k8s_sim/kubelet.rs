//! The kubelet's part: a pod that appears is, shortly after, Running and
//! Ready with its containers started (or, for a bad image, Pending with its
//! container waiting in `ImagePullBackOff`), written through the status
//! subresource with the pod's uid as precondition, so that a pod the
//! StatefulSet controller replaced in the meantime is left to its own turn.
//!
//! Pods are never bound to a node (there is none), so the API server deletes
//! them at once: a pod the StatefulSet controller deletes is gone without a
//! Terminating phase, and its successor appears right away.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use super::Sim;

/// What the pod's status should say.
#[derive(Debug, PartialEq)]
enum Want {
    Running,
    BackOff,
}

fn want(sim: &Sim, pod: &Pod) -> Want {
    let bad = pod.spec.iter().flat_map(|s| &s.containers).any(|c| {
        c.image
            .as_deref()
            .is_some_and(|i| i.contains(&sim.config.bad_image))
    });
    if bad {
        Want::BackOff
    } else {
        Want::Running
    }
}

/// The status already says what we would write.
fn done(pod: &Pod, want: &Want) -> bool {
    let Some(st) = &pod.status else { return false };
    let waiting = |reason: &str| {
        st.container_statuses.iter().flatten().any(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some(reason)
        })
    };
    match want {
        Want::Running => st.phase.as_deref() == Some("Running"),
        Want::BackOff => waiting("ImagePullBackOff"),
    }
}

/// Called for every pod the watch reports.
pub fn observe(sim: &Arc<Sim>, pod: Pod) {
    if pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    let w = want(sim, &pod);
    if done(&pod, &w) {
        return;
    }
    let Some(uid) = pod.uid() else { return };
    if !sim.pending.lock().unwrap().insert(uid.clone()) {
        return;
    }
    let sim = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(sim.config.ready_after_ms)).await;
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api: Api<Pod> = Api::namespaced(sim.client.clone(), &ns);
        let body = status_patch(&pod, &uid, &w, &sim.config.pod_ip);
        for attempt in 1..=10 {
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), uid = %uid, state = ?w, "pod status written");
                    break;
                }
                Err(e) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), uid = %uid, error = %e, attempt, "pod status not written");
                    // Replaced or deleted meanwhile: its successor gets its own turn.
                    let same = api
                        .get_opt(&name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|p| p.uid());
                    if same.as_deref() != Some(uid.as_str()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        sim.pending.lock().unwrap().remove(&uid);
    });
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn condition(type_: &str, ok: bool, reason: Option<&str>) -> Value {
    let mut c = json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": now(),
    });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

fn status_patch(pod: &Pod, uid: &str, want: &Want, ip: &str) -> Value {
    let running = *want == Want::Running;
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let mut s = json!({
                "name": c.name,
                "image": image,
                "imageID": "",
                "ready": running,
                "started": running,
                "restartCount": 0,
            });
            if running {
                s["imageID"] = json!(format!("sim://{image}"));
                s["containerID"] = json!(format!("sim://{uid}/{}", c.name));
                s["state"] = json!({"running": {"startedAt": now()}});
            } else {
                s["state"] = json!({"waiting": {
                    "reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\""),
                }});
            }
            s
        })
        .collect();
    let not_ready = (!running).then_some("ContainersNotReady");
    json!({
        "metadata": {"uid": uid},
        "status": {
            "phase": if running { "Running" } else { "Pending" },
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now(),
            "conditions": [
                condition("PodReadyToStartContainers", true, None),
                condition("Initialized", true, None),
                condition("Ready", running, not_ready),
                condition("ContainersReady", running, not_ready),
                condition("PodScheduled", true, None),
            ],
            "containerStatuses": containers,
        }
    })
}
