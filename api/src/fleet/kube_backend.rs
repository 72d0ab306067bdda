//! The Kubernetes backend: `MqttCluster` and `EdgeGateway` resources in the
//! tenant namespace `weir-<org>`, written by server-side apply with field
//! manager `weir-api`. The operator runs the brokers, signs the bundles and
//! writes them to the ConfigMap `<gateway>-config` (`bundle.json`,
//! `trust.json`), which the agent endpoints serve from in this mode.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use weir_crds::bundle::{SignedBundle, TrustAnchor};
use weir_crds::names::gateway_config;
use weir_crds::{EdgeGateway, EdgeGatewaySpec, MqttCluster, MqttClusterSpec, MqttClusterStatus};

use crate::error::ApiError;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "weir-api";

/// A client from in-cluster config or KUBECONFIG.
pub async fn client() -> Result<Client, String> {
    let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// The tenant namespace of organization `org` (the operator's naming).
pub fn namespace(org: &str) -> String {
    weir_crds::names::tenant_namespace(org)
}

fn kube_err(what: &str, e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::invalid(
            "spec",
            format!("Kubernetes refused the {what}: {}", s.message),
        ),
        other => ApiError::Unavailable(format!("Kubernetes: {what}: {other}")),
    }
}

/// Labels of what the api applies: its project, so the watch
/// ([`super::kube_sync`]) maps the object back to the same project.
fn labels(project: &str) -> Value {
    json!({
        weir_crds::names::labels::MANAGED_BY: FIELD_MANAGER,
        weir_crds::names::labels::PROJECT: project,
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Create or update the `MqttCluster`; returns its status as the API server has it.
pub async fn apply_cluster(
    client: &Client,
    org: &str,
    project: &str,
    name: &str,
    spec: &MqttClusterSpec,
) -> Result<Option<MqttClusterStatus>, ApiError> {
    let api: Api<MqttCluster> = Api::namespaced(client.clone(), &namespace(org));
    let obj = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "MqttCluster",
        "metadata": {"name": name, "labels": labels(project)},
        "spec": spec,
    });
    let c = api
        .patch(name, &apply_params(), &Patch::Apply(&obj))
        .await
        .map_err(|e| kube_err("MqttCluster", e))?;
    Ok(c.status)
}

pub async fn cluster_status(
    client: &Client,
    org: &str,
    name: &str,
) -> Result<Option<MqttClusterStatus>, ApiError> {
    let api: Api<MqttCluster> = Api::namespaced(client.clone(), &namespace(org));
    let c = api
        .get_opt(name)
        .await
        .map_err(|e| kube_err("MqttCluster", e))?;
    Ok(c.and_then(|c| c.status))
}

pub async fn delete_cluster(client: &Client, org: &str, name: &str) -> Result<(), ApiError> {
    let api: Api<MqttCluster> = Api::namespaced(client.clone(), &namespace(org));
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("MqttCluster", e)),
    }
}

/// Labels of Secret `name` in the tenant namespace (`None`: no such
/// Secret). Reads the metadata only: the api never needs the Secret's data.
pub async fn secret_labels(
    client: &Client,
    org: &str,
    name: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, ApiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace(org));
    let m = api
        .get_metadata_opt(name)
        .await
        .map_err(|e| kube_err("Secret", e))?;
    Ok(m.map(|m| m.metadata.labels.unwrap_or_default()))
}

pub async fn apply_gateway(
    client: &Client,
    org: &str,
    project: &str,
    name: &str,
    spec: &EdgeGatewaySpec,
) -> Result<(), ApiError> {
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), &namespace(org));
    let obj = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "EdgeGateway",
        "metadata": {"name": name, "labels": labels(project)},
        "spec": spec,
    });
    api.patch(name, &apply_params(), &Patch::Apply(&obj))
        .await
        .map_err(|e| kube_err("EdgeGateway", e))?;
    Ok(())
}

pub async fn delete_gateway(client: &Client, org: &str, name: &str) -> Result<(), ApiError> {
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), &namespace(org));
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("EdgeGateway", e)),
    }
}

async fn config_map(
    client: &Client,
    org: &str,
    gateway: &str,
) -> Result<Option<ConfigMap>, ApiError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace(org));
    api.get_opt(&format!("{gateway}-config"))
        .await
        .map_err(|e| kube_err("ConfigMap", e))
}

/// The operator's signed bundle for a gateway: (version, JSON text).
pub async fn read_bundle(
    client: &Client,
    org: &str,
    gateway: &str,
) -> Result<Option<(i64, String)>, ApiError> {
    let Some(cm) = config_map(client, org, gateway).await? else {
        return Ok(None);
    };
    let Some(text) = cm.data.and_then(|mut d| d.remove(gateway_config::BUNDLE)) else {
        return Ok(None);
    };
    let signed: SignedBundle = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let payload: Value = B64
        .decode(&signed.payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::internal("operator bundle payload is unreadable"))?;
    let version = payload["version"].as_i64().unwrap_or(0);
    // Re-serialize compactly, as the embedded mode serves it.
    Ok(Some((
        version,
        serde_json::to_string(&signed).map_err(ApiError::internal)?,
    )))
}

/// The tenant's config-signing key, as the operator publishes it next to a gateway's bundle.
pub async fn trust_anchor(
    client: &Client,
    org: &str,
    gateway: &str,
) -> Result<TrustAnchor, ApiError> {
    let cm = config_map(client, org, gateway).await?.ok_or_else(|| {
        ApiError::Unavailable("the operator has not signed a config for this gateway yet".into())
    })?;
    let text = cm
        .data
        .and_then(|mut d| d.remove(gateway_config::TRUST))
        .ok_or_else(|| ApiError::Unavailable("the gateway's ConfigMap has no trust.json".into()))?;
    serde_json::from_str(&text).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    /// kube's mock service: answer one request and hand it back to the test.
    async fn one_request(
        reply: Value,
        status: u16,
        call: impl std::future::Future<Output = ()> + Send + 'static,
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> (http::Method, String, Option<String>, Value) {
        let task = tokio::spawn(call);
        let (req, send) = handle.next_request().await.expect("a request");
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let ct = req
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        task.await.unwrap();
        (method, uri, ct, body)
    }

    #[tokio::test]
    async fn cluster_is_server_side_applied_in_the_tenant_namespace() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let spec: MqttClusterSpec = serde_json::from_value(json!({"replicas": 3})).unwrap();
        let reply = json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
            "metadata": {"name": "main", "namespace": "weir-riverside"},
            "spec": spec,
            "status": {"phase": "Ready", "replicas": 3, "readyReplicas": 3,
                       "endpoints": ["mqtt://main-mqtt.weir-riverside.svc:1883"]},
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s2 = spec.clone();
        let call = async move {
            let st = apply_cluster(&client, "riverside", "north", "main", &s2)
                .await
                .unwrap();
            tx.send(st).unwrap();
        };
        let (method, uri, ct, body) = one_request(reply, 200, call, handle).await;
        assert_eq!(method, http::Method::PATCH);
        assert!(
            uri.starts_with("/apis/weir.dev/v1alpha1/namespaces/weir-riverside/mqttclusters/main?"),
            "{uri}"
        );
        assert!(
            uri.contains("fieldManager=weir-api") && uri.contains("force=true"),
            "{uri}"
        );
        assert_eq!(ct.as_deref(), Some("application/apply-patch+yaml"));
        assert_eq!(body["kind"], "MqttCluster");
        assert_eq!(body["spec"]["replicas"], 3);
        assert_eq!(body["metadata"]["labels"]["weir.dev/project"], "north");
        assert!(body.get("status").is_none(), "never applies status");
        let status = rx.await.unwrap().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Ready"));
        assert_eq!(
            status.endpoints,
            vec!["mqtt://main-mqtt.weir-riverside.svc:1883"]
        );
    }

    #[tokio::test]
    async fn gateway_is_applied_and_bundle_read_from_the_operator_config_map() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let spec: EdgeGatewaySpec = serde_json::from_value(json!({"clusterRef": "main"})).unwrap();
        let c2 = client.clone();
        let reply = json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway",
            "metadata": {"name": "pump-1", "namespace": "weir-riverside"}, "spec": spec,
        });
        let (method, uri, _, body) = one_request(
            reply,
            200,
            async move {
                apply_gateway(&c2, "riverside", "north", "pump-1", &spec)
                    .await
                    .unwrap()
            },
            handle,
        )
        .await;
        assert_eq!(method, http::Method::PATCH);
        assert!(
            uri.starts_with(
                "/apis/weir.dev/v1alpha1/namespaces/weir-riverside/edgegateways/pump-1?"
            ),
            "{uri}"
        );
        assert!(uri.contains("fieldManager=weir-api"), "{uri}");
        assert_eq!(body["spec"]["clusterRef"], "main");
        assert_eq!(body["metadata"]["labels"]["weir.dev/project"], "north");

        // The bundle the operator signed is served with its version.
        let key = weir_crds::bundle::generate_key();
        let payload = weir_crds::bundle::BundlePayload::new(
            "riverside",
            "pump-1",
            7,
            Default::default(),
            chrono::Utc::now(),
            chrono::Duration::days(1),
        );
        let signed = weir_crds::bundle::sign(&payload, &key);
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "pump-1-config", "namespace": "weir-riverside"},
            "data": {"bundle.json": serde_json::to_string_pretty(&signed).unwrap(),
                     "trust.json": serde_json::to_string(&TrustAnchor::from_key(&key.verifying_key())).unwrap()}});
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (method, uri, _, _) = one_request(
            cm,
            200,
            async move {
                tx.send(read_bundle(&client, "riverside", "pump-1").await.unwrap())
                    .unwrap()
            },
            handle,
        )
        .await;
        assert_eq!(method, http::Method::GET);
        assert_eq!(
            uri,
            "/api/v1/namespaces/weir-riverside/configmaps/pump-1-config"
        );
        let (version, text) = rx.await.unwrap().unwrap();
        assert_eq!(version, 7);
        assert_eq!(serde_json::from_str::<SignedBundle>(&text).unwrap(), signed);
    }
}
