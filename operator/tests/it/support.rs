//! What every integration test uses: the tenant namespace, a context over
//! the in-memory API server with a settable EMQX locator, and the
//! steady-state check.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use weir_crds::MqttCluster;
use weir_operator::context::EmqxLocator;
use weir_operator::metrics::Metrics;
use weir_operator::testing::FakeApiServer;
use weir_operator::{Context, OperatorConfig};

pub const NS: &str = "weir-riverside-water";

/// Pods → mock EMQX URLs; unknown pods get a closed port.
#[derive(Default)]
pub struct Locator(pub Mutex<HashMap<String, String>>);

impl EmqxLocator for Locator {
    fn base_url(&self, _c: &MqttCluster, pod: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .get(pod)
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:9".into())
    }
}

pub fn context(fake: &FakeApiServer, locator: Arc<Locator>) -> Arc<Context> {
    context_with(fake, OperatorConfig::default(), locator)
}

/// [`context`] with other operator settings.
pub fn context_with(
    fake: &FakeApiServer,
    config: OperatorConfig,
    locator: Arc<Locator>,
) -> Arc<Context> {
    Arc::new(
        Context::new(fake.client(), config, Arc::new(Metrics::default()))
            .with_emqx_locator(locator),
    )
}

pub fn writes_without_events(fake: &FakeApiServer) -> Vec<String> {
    fake.writes()
        .into_iter()
        .filter(|w| !w.contains("/events"))
        .collect()
}

/// The steady state: run `round` (one or more reconciles) on a cleared call
/// log and assert it wrote nothing, neither objects nor status nor events.
pub async fn assert_steady<T>(fake: &FakeApiServer, round: impl Future<Output = T>) -> T {
    fake.clear_calls();
    let out = round.await;
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "a reconcile with nothing to do writes nothing"
    );
    out
}
