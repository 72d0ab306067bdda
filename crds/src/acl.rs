//! Who may publish and subscribe where on a tenant's broker: one table for
//! every component and every broker mode. EMQX gets it as the `acl` claim
//! of api-issued JWTs; an adopted Mosquitto gets it as dynamic-security
//! roles. Nothing else grants MQTT access, so a broker identity can do
//! exactly what its row here says and nothing more.
//!
//! Topics (see [`crate::message`]): readings on
//! `{prefix}/{tenant}/{gateway}/{device}/{group}`, commands on
//! `{prefix}/{tenant}/{gateway}/cmd/{write,replay}`, write answers on
//! `{prefix}/{tenant}/{gateway}/cmd/write/resp`. A device may not be named
//! `cmd` (the gateway model refuses it), so the two trees never overlap
//! for a publisher. Rules are evaluated in order, first match wins, and
//! every list ends with a deny-all.
//!
//! Brokers authorize a subscription by its filter: a readings filter
//! (`+/+/+` under the tenant) also receives command messages, whose topics
//! have the same depth. Only the api and the historian hold such filters,
//! and both already publish commands; agents are confined to their own
//! gateway.

use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

/// What a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Subscribe,
    All,
}

/// One rule: a permission for an action on an MQTT topic filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub permission: Permission,
    pub action: Action,
    pub topic: String,
}

/// A broker identity's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The agent of one gateway: its own readings and write answers out,
    /// its own commands in.
    Agent { gateway: &'a str },
    /// The historian: every reading of the tenant in, replay requests out.
    Historian,
    /// The api: readings and write answers in, commands and replay
    /// requests out.
    Api,
}

fn rule(permission: Permission, action: Action, topic: String) -> Rule {
    Rule {
        permission,
        action,
        topic,
    }
}

/// The rules of `who` on the broker of `tenant`, with the configured topic
/// `prefix` (the gateways' `uplink.topicPrefix`, `weir` by default).
pub fn rules(prefix: &str, tenant: &str, who: Identity<'_>) -> Vec<Rule> {
    use Action::*;
    use Permission::*;
    let base = format!("{prefix}/{tenant}");
    let mut out = match who {
        Identity::Agent { gateway } => {
            let gw = format!("{base}/{gateway}");
            vec![
                rule(Allow, Publish, format!("{gw}/cmd/write/resp")),
                rule(Allow, Publish, format!("{gw}/cmd/replay/resp")),
                rule(Allow, Publish, format!("{gw}/cmd/uplink/state")),
                // Its own command topics are for the api and the historian.
                rule(Deny, Publish, format!("{gw}/cmd/#")),
                rule(Allow, Publish, format!("{gw}/+/+")),
                rule(Allow, Subscribe, format!("{gw}/cmd/+")),
            ]
        }
        Identity::Historian => vec![
            rule(Allow, Subscribe, format!("{base}/+/+/+")),
            rule(Allow, Subscribe, format!("{base}/+/cmd/replay/resp")),
            rule(Allow, Subscribe, format!("{base}/+/cmd/uplink/state")),
            rule(Allow, Publish, format!("{base}/+/cmd/replay")),
        ],
        Identity::Api => vec![
            rule(Allow, Subscribe, format!("{base}/+/+/+")),
            rule(Allow, Subscribe, format!("{base}/+/cmd/write/resp")),
            rule(Allow, Publish, format!("{base}/+/cmd/write")),
            rule(Allow, Publish, format!("{base}/+/cmd/replay")),
        ],
    };
    out.push(rule(Deny, All, "#".into()));
    out
}

/// The subscription filter that reads every reading of a tenant.
pub fn readings_filter(prefix: &str, tenant: &str) -> String {
    format!("{prefix}/{tenant}/+/+/+")
}

/// Whether `filter` (an MQTT topic filter, or a topic) is covered by the
/// rule filter `pattern`: every topic `filter` can match, `pattern` matches.
/// Brokers decide the same way when they authorize a subscription.
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What the rules decide for `action` on `topic` (first match wins).
pub fn allows(rules: &[Rule], action: Action, topic: &str) -> bool {
    rules
        .iter()
        .find(|r| (r.action == action || r.action == Action::All) && covers(&r.topic, topic))
        .is_some_and(|r| r.permission == Permission::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        command_response_topic, command_topic, replay_response_topic, replay_topic, topic,
        uplink_state_topic,
    };

    const P: &str = "weir";
    const T: &str = "riverside";

    #[test]
    fn an_agent_reaches_only_its_own_gateway() {
        let r = rules(P, T, Identity::Agent { gateway: "ps-1" });
        let own = topic(P, T, "ps-1", "pump-1", "fast");
        assert!(allows(&r, Action::Publish, &own));
        assert!(allows(
            &r,
            Action::Publish,
            &command_response_topic(P, T, "ps-1")
        ));
        assert!(allows(&r, Action::Subscribe, &command_topic(P, T, "ps-1")));
        assert!(allows(&r, Action::Subscribe, &replay_topic(P, T, "ps-1")));
        assert!(allows(
            &r,
            Action::Publish,
            &replay_response_topic(P, T, "ps-1")
        ));
        assert!(allows(
            &r,
            Action::Publish,
            &uplink_state_topic(P, T, "ps-1")
        ));
        assert!(!allows(
            &r,
            Action::Publish,
            &uplink_state_topic(P, T, "ps-2")
        ));
        // Another gateway: neither way.
        assert!(!allows(
            &r,
            Action::Publish,
            &topic(P, T, "ps-2", "pump-1", "fast")
        ));
        assert!(!allows(&r, Action::Subscribe, &command_topic(P, T, "ps-2")));
        assert!(!allows(
            &r,
            Action::Subscribe,
            &topic(P, T, "ps-2", "pump-1", "fast")
        ));
        // Not even its own readings back, nor commands to itself, nor wildcards.
        assert!(!allows(&r, Action::Subscribe, &own));
        assert!(!allows(&r, Action::Publish, &command_topic(P, T, "ps-1")));
        assert!(!allows(
            &r,
            Action::Publish,
            "weir/riverside/ps-1/cmd/replay"
        ));
        assert!(!allows(&r, Action::Subscribe, "weir/riverside/ps-1/cmd/#"));
        assert!(!allows(&r, Action::Subscribe, "#"));
        assert!(!allows(&r, Action::Publish, "weir/other/ps-1/pump-1/fast"));
    }

    #[test]
    fn the_historian_reads_readings_and_asks_for_replays() {
        let r = rules(P, T, Identity::Historian);
        assert!(allows(&r, Action::Subscribe, &readings_filter(P, T)));
        assert!(allows(
            &r,
            Action::Publish,
            "weir/riverside/ps-1/cmd/replay"
        ));
        assert!(allows(
            &r,
            Action::Subscribe,
            &replay_response_topic(P, T, "ps-1")
        ));
        assert!(allows(
            &r,
            Action::Subscribe,
            &uplink_state_topic(P, T, "ps-1")
        ));
        assert!(!allows(
            &r,
            Action::Subscribe,
            &command_response_topic(P, T, "ps-1")
        ));
        assert!(!allows(&r, Action::Publish, &command_topic(P, T, "ps-1")));
        assert!(!allows(&r, Action::Publish, &topic(P, T, "ps-1", "d", "g")));
        assert!(!allows(&r, Action::Subscribe, "weir/riverside/#"));
        assert!(!allows(&r, Action::Subscribe, &readings_filter(P, "other")));
    }

    #[test]
    fn the_api_reads_readings_and_answers_and_sends_commands() {
        let r = rules(P, T, Identity::Api);
        assert!(allows(&r, Action::Subscribe, &readings_filter(P, T)));
        assert!(allows(
            &r,
            Action::Subscribe,
            "weir/riverside/+/cmd/write/resp"
        ));
        assert!(allows(&r, Action::Publish, &command_topic(P, T, "ps-1")));
        assert!(allows(
            &r,
            Action::Publish,
            "weir/riverside/ps-1/cmd/replay"
        ));
        assert!(!allows(&r, Action::Publish, &topic(P, T, "ps-1", "d", "g")));
        assert!(!allows(
            &r,
            Action::Publish,
            &command_topic(P, "other", "ps-1")
        ));
    }

    #[test]
    fn the_prefix_comes_from_the_configuration() {
        let r = rules("plant", T, Identity::Agent { gateway: "ps-1" });
        assert!(allows(&r, Action::Publish, "plant/riverside/ps-1/d/g"));
        assert!(!allows(&r, Action::Publish, "weir/riverside/ps-1/d/g"));
    }

    #[test]
    fn covers_is_filter_inclusion() {
        assert!(covers("a/+/c", "a/b/c"));
        assert!(covers("a/+/c", "a/+/c"));
        assert!(!covers("a/+/c", "a/#"));
        assert!(covers("a/#", "a/b/c/d"));
        assert!(covers("a/#", "a"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/b", "a/b/c"));
    }
}
