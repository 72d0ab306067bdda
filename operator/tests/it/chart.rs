//! The Helm chart: CRDs identical to `crds/yaml/`, templates that parse
//! as YAML once template expressions are blanked, RBAC without `*`, and
//! Secrets only through a per-tenant-namespace binding.
//! (helm is not available here, so nothing is rendered.)

use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

#[test]
fn chart_crds_are_identical_to_generated_crds() {
    let generated = repo().join("crds/yaml");
    let chart = repo().join("charts/weir/crds");
    let mut names: Vec<_> = std::fs::read_dir(&generated)
        .expect("crds/yaml exists")
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let a = std::fs::read(generated.join(name)).unwrap();
        let b = std::fs::read(chart.join(name)).unwrap_or_default();
        assert!(
            a == b,
            "charts/weir/crds/{} differs from crds/yaml/{}; write both with:\n  make crds",
            name.to_string_lossy(),
            name.to_string_lossy()
        );
    }
    let chart_count = std::fs::read_dir(&chart).unwrap().count();
    assert_eq!(
        chart_count,
        names.len(),
        "charts/weir/crds holds files that crds/yaml does not"
    );
}

/// `kubectl autoscale mqttcluster/...` and an HPA read the pods' selector
/// from the scale subresource, which names where it lives in the status.
#[test]
fn chart_mqttcluster_scale_subresource_names_the_pod_selector() {
    let text = std::fs::read_to_string(repo().join("charts/weir/crds/mqttclusters.weir.dev.yaml"))
        .expect("chart CRD");
    let crd: Value = serde_yaml::from_str(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap();
    let v = &crd["spec"]["versions"][0];
    let scale = &v["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"].as_str(), Some(".spec.replicas"));
    assert_eq!(
        scale["statusReplicasPath"].as_str(),
        Some(".status.replicas")
    );
    assert_eq!(
        scale["labelSelectorPath"].as_str(),
        Some(".status.selector")
    );
    assert_eq!(
        v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["selector"]["type"]
            .as_str(),
        Some("string")
    );
}

/// Blank `{{ ... }}`: lines that are only an action go, inline ones become a word.
fn blank_template(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("{{") && t.ends_with("}}") {
            continue;
        }
        let mut rest = line;
        let mut l = String::new();
        while let Some(i) = rest.find("{{") {
            l.push_str(&rest[..i]);
            match rest[i..].find("}}") {
                Some(j) => {
                    l.push_str("TEMPLATE");
                    rest = &rest[i + j + 2..];
                }
                None => {
                    rest = "";
                }
            }
        }
        l.push_str(rest);
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn template_docs() -> Vec<(String, Value)> {
    let dir = repo().join("charts/weir/templates");
    let mut docs = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let text = blank_template(&std::fs::read_to_string(&path).unwrap());
        for (i, doc) in text.split("\n---").enumerate() {
            let v: Value = serde_yaml::from_str(doc).unwrap_or_else(|e| {
                panic!("{} document {i} does not parse: {e}\n{doc}", path.display())
            });
            if !v.is_null() {
                docs.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    docs
}

#[test]
fn templates_parse_and_hold_the_expected_objects() {
    let docs = template_docs();
    let kinds: Vec<(String, String)> = docs
        .iter()
        .map(|(_, v)| {
            (
                v["kind"].as_str().unwrap_or("").to_string(),
                v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        ("Deployment", "weir-operator"),
        ("ServiceAccount", "weir-operator"),
        ("ClusterRole", "weir-operator"),
        ("ClusterRoleBinding", "weir-operator"),
        ("ClusterRole", "weir-tenant-admin"),
        ("ClusterRole", "weir-api"),
        ("ClusterRoleBinding", "weir-api"),
        ("Deployment", "weir-api"),
        ("Service", "weir-api"),
    ] {
        assert!(
            kinds.iter().any(|(k, n)| k == want.0 && n == want.1),
            "chart lacks {want:?}; has {kinds:?}"
        );
    }
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("charts/weir/values.yaml")).unwrap(),
    )
    .unwrap();
    assert!(values["operator"]["image"]["repository"].is_string());
    assert_eq!(values["operator"]["leaderElection"], Value::Bool(true));
}

#[test]
fn cluster_roles_name_every_resource_and_verb() {
    for (file, doc) in template_docs() {
        let kind = doc["kind"].as_str().unwrap_or("");
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let rules = doc["rules"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{file}: role without rules"));
        for rule in rules {
            for field in ["apiGroups", "resources", "verbs"] {
                let items = rule[field]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{file}: rule without {field}: {rule:?}"));
                assert!(!items.is_empty());
                for item in items {
                    assert_ne!(
                        item.as_str(),
                        Some("*"),
                        "{file}: `*` in {field} of {rule:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn operator_can_do_what_the_reconcilers_do() {
    let docs = template_docs();
    let role = docs
        .iter()
        .find(|(_, v)| v["kind"] == "ClusterRole" && v["metadata"]["name"] == "weir-operator")
        .map(|(_, v)| v.clone())
        .unwrap();
    let allows = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_sequence().unwrap().iter().any(|r| {
            let has = |f: &str, x: &str| {
                r[f].as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v.as_str() == Some(x))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for (g, r, v) in [
        ("weir.dev", "mqttclusters", "watch"),
        ("weir.dev", "mqttclusters/status", "patch"),
        ("", "namespaces", "patch"),
        ("apps", "statefulsets", "patch"),
        ("", "pods", "delete"),
        ("", "persistentvolumeclaims", "deletecollection"),
        ("", "persistentvolumeclaims", "patch"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "resourcequotas", "watch"),
        ("", "limitranges", "watch"),
        ("policy", "poddisruptionbudgets", "watch"),
        ("networking.k8s.io", "networkpolicies", "watch"),
        ("rbac.authorization.k8s.io", "rolebindings", "watch"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
        ("events.k8s.io", "events", "create"),
        ("storage.k8s.io", "storageclasses", "get"),
    ] {
        assert!(allows(g, r, v), "operator ClusterRole lacks {v} on {g}/{r}");
    }
    assert!(
        !allows("", "namespaces", "delete"),
        "the operator never deletes namespaces itself"
    );
    for v in ["get", "list", "watch", "create", "patch"] {
        assert!(
            !allows("", "secrets", v),
            "the operator's ClusterRole grants {v} on Secrets in every namespace"
        );
    }
}

/// Secrets are in a ClusterRole of their own, named by the value
/// `operator.secretsClusterRole` (the operator's flag default, so both agree),
/// bound by no ClusterRoleBinding: the operator binds it to itself in each
/// tenant namespace, which it may do only with `bind` on that role.
#[test]
fn operator_secrets_role_is_bound_only_per_tenant_namespace() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("charts/weir/values.yaml")).unwrap(),
    )
    .unwrap();
    let default = weir_operator::OperatorConfig::default();
    assert_eq!(
        values["operator"]["secretsClusterRole"].as_str(),
        Some(default.secrets_role.as_str()),
        "values.yaml operator.secretsClusterRole and the operator's --secrets-cluster-role default differ"
    );
    let raw =
        std::fs::read_to_string(repo().join("charts/weir/templates/operator-clusterrole.yaml"))
            .unwrap();
    let templated = "{{ .Values.operator.secretsClusterRole }}";
    assert!(
        raw.contains(&format!("name: \"{templated}\"")),
        "the Secrets ClusterRole is not named by operator.secretsClusterRole"
    );
    assert!(
        raw.contains(&format!(
            "resourceNames: [\"weir-tenant-admin\", \"{templated}\"]"
        )),
        "the operator may not bind the Secrets ClusterRole"
    );
    let docs = template_docs();
    // Blanked, the templated name reads TEMPLATE.
    let secrets_roles: Vec<&Value> = docs
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == "ClusterRole" && v["metadata"]["name"] == "TEMPLATE")
        .collect();
    assert_eq!(secrets_roles.len(), 1);
    let rules = secrets_roles[0]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"][0].as_str(), Some("secrets"));
    let verbs: Vec<&str> = rules[0]["verbs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for v in ["get", "create", "patch", "update"] {
        assert!(verbs.contains(&v), "the Secrets role lacks {v}");
    }
    assert!(
        !verbs.contains(&"list") && !verbs.contains(&"watch"),
        "Secrets are read by name, never listed: {verbs:?}"
    );
    for (file, doc) in &docs {
        if doc["kind"] == "ClusterRoleBinding" {
            assert_ne!(
                doc["roleRef"]["name"], "TEMPLATE",
                "{file}: the Secrets role is bound cluster-wide"
            );
        }
    }
    let deployment =
        std::fs::read_to_string(repo().join("charts/weir/templates/operator-deployment.yaml"))
            .unwrap();
    for env in [
        "WEIR_OPERATOR_SERVICE_ACCOUNT",
        "WEIR_OPERATOR_SECRETS_CLUSTER_ROLE",
        "WEIR_OPERATOR_NAMESPACE",
    ] {
        assert!(
            deployment.contains(&format!("- name: {env}")),
            "the operator Deployment does not set {env}"
        );
    }
}
