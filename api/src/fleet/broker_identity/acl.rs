//! The ACL table ([`weir_crds::acl::rules`]) as Mosquitto dynamic-security
//! role ACLs. A pure translation, so what a broker identity may do is the
//! table's row and nothing else.
//!
//! - Order becomes priority: the plugin checks a role's ACLs of one type
//!   highest priority first and the first match decides, like the table.
//!   The last rule (the deny-all) gets priority 0.
//! - Publish → `publishClientSend`. Subscribe → `subscribePattern` (the
//!   plugin grants a filter only when the pattern covers it, like
//!   [`weir_crds::acl::covers`]), the same for its shared form
//!   `$share/+/{filter}` (a shared subscription is checked with its
//!   `$share/{group}/` prefix), and `publishClientReceive` for the messages
//!   it brings, so an identity that ever held a wider filter still receives
//!   nothing outside its row.
//! - The deny-all is explicit for every type rather than left to the
//!   plugin's `defaultACLAccess`, which an operator may have opened (and
//!   whose receive default is allow).

use serde::Serialize;
use weir_crds::acl::{Action, Permission, Rule};

pub const PUBLISH: &str = "publishClientSend";
pub const RECEIVE: &str = "publishClientReceive";
pub const SUBSCRIBE: &str = "subscribePattern";

/// One role ACL as the plugin's `createRole` / `addRoleACL` take it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DynsecAcl {
    pub acltype: &'static str,
    pub topic: String,
    pub priority: i64,
    pub allow: bool,
}

/// The role ACLs that enforce `rules` (first match wins).
pub fn role_acls(rules: &[Rule]) -> Vec<DynsecAcl> {
    let mut out: Vec<DynsecAcl> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let priority = (rules.len() - 1 - i) as i64;
        let allow = r.permission == Permission::Allow;
        let mut push = |acltype: &'static str, topic: String| {
            // The same type and topic twice: the earlier (higher) one decides
            // anyway, and the plugin refuses duplicates.
            if !out.iter().any(|a| a.acltype == acltype && a.topic == topic) {
                out.push(DynsecAcl {
                    acltype,
                    topic,
                    priority,
                    allow,
                });
            }
        };
        if matches!(r.action, Action::Publish | Action::All) {
            push(PUBLISH, r.topic.clone());
        }
        if matches!(r.action, Action::Subscribe | Action::All) {
            push(SUBSCRIBE, r.topic.clone());
            push(SUBSCRIBE, format!("$share/+/{}", r.topic));
            push(RECEIVE, r.topic.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::acl::{rules, Identity};

    fn find<'a>(acls: &'a [DynsecAcl], acltype: &str, topic: &str) -> &'a DynsecAcl {
        acls.iter()
            .find(|a| a.acltype == acltype && a.topic == topic)
            .unwrap_or_else(|| panic!("no {acltype} {topic} in {acls:#?}"))
    }

    #[test]
    fn an_agent_role_keeps_the_tables_order_as_priorities() {
        let acls = role_acls(&rules("weir", "t", Identity::Agent { gateway: "a" }));
        let resp = find(&acls, PUBLISH, "weir/t/a/cmd/write/resp");
        let cmd = find(&acls, PUBLISH, "weir/t/a/cmd/#");
        let readings = find(&acls, PUBLISH, "weir/t/a/+/+");
        assert!(resp.allow && !cmd.allow && readings.allow);
        // The write answer beats the command deny, which beats the readings allow.
        assert!(resp.priority > cmd.priority && cmd.priority > readings.priority);
        let sub = find(&acls, SUBSCRIBE, "weir/t/a/cmd/+");
        assert!(sub.allow);
        assert!(find(&acls, SUBSCRIBE, "$share/+/weir/t/a/cmd/+").allow);
        assert!(find(&acls, RECEIVE, "weir/t/a/cmd/+").allow);
    }

    #[test]
    fn the_deny_all_is_explicit_and_lowest_for_every_type() {
        let acls = role_acls(&rules("weir", "t", Identity::Agent { gateway: "a" }));
        for t in [PUBLISH, SUBSCRIBE, RECEIVE] {
            let d = find(&acls, t, "#");
            assert!(!d.allow, "{t}");
            assert_eq!(d.priority, 0, "{t}");
            if t == SUBSCRIBE {
                let shared = find(&acls, t, "$share/+/#");
                assert!(!shared.allow && shared.priority == 0);
            }
            assert!(acls
                .iter()
                .filter(|a| a.acltype == t && !a.topic.ends_with('#'))
                .all(|a| a.priority > 0));
        }
        // Nothing of another gateway is allowed in any way.
        assert!(!acls.iter().any(|a| a.allow && a.topic.contains("/b/")));
    }

    #[test]
    fn the_api_reads_through_shared_subscriptions_too() {
        let acls = role_acls(&rules("plant", "t", Identity::Api));
        assert!(find(&acls, SUBSCRIBE, "plant/t/+/+/+").allow);
        assert!(find(&acls, SUBSCRIBE, "$share/+/plant/t/+/+/+").allow);
        assert!(find(&acls, RECEIVE, "plant/t/+/cmd/write/resp").allow);
        assert!(find(&acls, PUBLISH, "plant/t/+/cmd/write").allow);
        // No weir/ topic when the prefix is configured otherwise.
        assert!(!acls.iter().any(|a| a.allow && a.topic.contains("weir/")));
    }

    #[test]
    fn duplicates_keep_the_first_rule() {
        let r = |permission, topic: &str| Rule {
            permission,
            action: Action::Publish,
            topic: topic.into(),
        };
        let acls = role_acls(&[r(Permission::Deny, "x/#"), r(Permission::Allow, "x/#")]);
        assert_eq!(acls.len(), 1);
        assert!(!acls[0].allow);
        assert_eq!(acls[0].priority, 1);
    }
}
