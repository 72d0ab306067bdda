//! The `kubernetes` backend's spec: checked with the CRD's schema and CEL
//! rules, then with the platform's allow-list ([`super::spec_policy`]),
//! then each Secret it names against the Kubernetes API (labelled for the
//! project), before it is server-side applied as an `MqttCluster`.

use std::sync::OnceLock;

use serde_json::Value;
use weir_crds::names::labels;
use weir_crds::{MqttCluster, MqttClusterSpec};

use super::spec_policy::{self, Platform};
use crate::error::{ApiError, FieldError};
use crate::fleet::kube_backend;
use crate::state::AppState;

fn cluster_spec_schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(|| {
        let crd = serde_json::to_value(weir_crds::crd::<MqttCluster>()).expect("crd serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    })
}

/// Validate an `MqttClusterSpec` with the CRD's schema and CEL rules
/// (transition rules against `old`).
fn validate_schema(value: &Value, old: Option<&Value>) -> Result<MqttClusterSpec, ApiError> {
    let errs = weir_crds::gateway::validate::check_against_schema(
        cluster_spec_schema(),
        value,
        old,
        "spec",
    );
    if !errs.is_empty() {
        return Err(crate::fleet::gateways::spec_errors(errs));
    }
    serde_json::from_value(value.clone()).map_err(|e| ApiError::invalid("spec", e.to_string()))
}

/// The JWKS URL every kubernetes cluster verifies agents' JWTs with.
pub(super) fn jwks_url(st: &AppState) -> String {
    format!("{}/api/v1/jwks.json", st.fleet.public_url)
}

/// The spec `value` (the whole new spec; `requested` is what the caller
/// sent: the spec on create, the merge patch on update) as it may be
/// applied: schema, then the allow-list, with the platform's JWKS URL set.
/// Needs no Kubernetes API, so a bad spec is refused even by an api
/// without one.
pub(super) fn check_spec(
    st: &AppState,
    value: &Value,
    old: Option<&Value>,
    requested: &Value,
) -> Result<MqttClusterSpec, ApiError> {
    let mut spec = validate_schema(value, old)?;
    let jwks = jwks_url(st);
    let registry = spec_policy::normalize_registry(&st.fleet.config.cluster_image_registry);
    let platform = Platform {
        image_registry: &registry,
        jwks_url: &jwks,
    };
    let requested_jwks = requested
        .pointer("/authentication/jwksUrl")
        .and_then(Value::as_str);
    let errs = spec_policy::check(&spec, requested_jwks, &platform);
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    spec.authentication.jwks_url = Some(jwks);
    Ok(spec)
}

/// Refuse a spec naming a Secret of the tenant namespace that is missing or
/// not labelled `weir.dev/project=<project>`: the namespace is the whole
/// organization's, the label says which project a Secret is for.
pub(super) async fn check_secrets(
    client: &kube::Client,
    org: &str,
    project: &str,
    spec: &MqttClusterSpec,
) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    for (field, name) in spec_policy::secret_refs(spec) {
        let found = kube_backend::secret_labels(client, org, &name).await?;
        let owner = found.as_ref().and_then(|l| l.get(labels::PROJECT));
        if owner.map(String::as_str) != Some(project) {
            errs.push(FieldError::new(
                field,
                format!(
                    "no Secret '{name}' labelled {}={} in namespace {}",
                    labels::PROJECT,
                    project,
                    kube_backend::namespace(org)
                ),
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    /// A Kubernetes API that knows Secrets by name, with their labels.
    fn api(secrets: Value) -> (kube::Client, tokio::task::JoinHandle<Vec<String>>) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let task = tokio::spawn(async move {
            let mut asked = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_string();
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                asked.push(path);
                let (status, body) = match secrets.get(&name) {
                    Some(labels) => (
                        200,
                        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": name, "namespace": "weir-riverside", "labels": labels}}),
                    ),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                };
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
            asked
        });
        (kube::Client::new(svc, "default"), task)
    }

    fn fields(r: Result<(), ApiError>) -> Vec<String> {
        match r {
            Ok(()) => vec![],
            Err(ApiError::Validation(e)) => e.into_iter().map(|e| e.field).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_spec_names_only_secrets_labelled_for_its_project() {
        let spec: MqttClusterSpec = serde_json::from_value(json!({
            "listeners": [{"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "north-tls"}],
            "license": {"secretRef": "south-licence"},
            "historian": {"databaseSecretRef": "missing"},
        }))
        .unwrap();
        let (client, task) = api(json!({
            "north-tls": {"weir.dev/project": "north"},
            "south-licence": {"weir.dev/project": "south"},
        }));
        let r = check_secrets(&client, "riverside", "north", &spec).await;
        assert_eq!(
            fields(r),
            ["spec.license.secretRef", "spec.historian.databaseSecretRef"]
        );
        drop(client);
        let asked = task.await.unwrap();
        assert_eq!(
            asked[0], "/api/v1/namespaces/weir-riverside/secrets/north-tls",
            "looked up in the tenant namespace"
        );
        assert_eq!(asked.len(), 3);
        let (client, _task) = api(json!({"north-tls": {"weir.dev/project": "north"}}));
        let spec: MqttClusterSpec = serde_json::from_value(json!({
            "listeners": [{"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "north-tls"}],
        }))
        .unwrap();
        assert!(fields(check_secrets(&client, "riverside", "north", &spec).await).is_empty());
    }
}
