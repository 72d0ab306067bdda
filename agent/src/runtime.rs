//! The running data path: adapters → pipeline → disk queue → uplink, and
//! atomic config swaps.
//!
//! Adapters send samples into one bounded channel. The pipeline task owns the
//! compiled rules and appends frames to the queue; a swap hands it a newly
//! compiled pipeline through a control channel, so samples already in the
//! channel are processed (by the new rules), never dropped. The queue and the
//! uplink live across swaps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{
    command_response_topic, command_topic, replay_response_topic, replay_topic, uplink_state_topic,
    WriteRequest, WriteResponse,
};

use crate::adapters::{Adapters, HealthTable};
use crate::credentials::{CredentialSource, CredentialStore};
use crate::error::Result;
use crate::pipeline::{Pipeline, PipelineStats, TopicBase};
use crate::queue::{DiskQueue, FsyncPolicy, QueueConfig};
use crate::sample::{now_ms, PendingFrame, Sample};
use crate::uplink::{Uplink, UplinkSettings, UplinkStats};

/// Samples waiting for the pipeline, at most.
const SAMPLE_CHANNEL: usize = 4096;

/// Where the broker is and who we are on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Broker {
    pub urls: Vec<String>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates for `mqtts://` brokers with a private CA.
    pub ca_pem: Option<Vec<u8>>,
}

pub struct RuntimeOptions {
    pub queue_dir: std::path::PathBuf,
    pub fsync: FsyncPolicy,
    pub tenant: String,
    pub gateway: String,
    pub broker: Broker,
    /// Messages awaiting PUBACK at most.
    pub inflight: u16,
}

pub struct Runtime {
    pub queue: Arc<DiskQueue>,
    pub pipeline_stats: Arc<PipelineStats>,
    pub uplink_stats: Arc<UplinkStats>,
    pub health: Arc<HealthTable>,
    pub applied_version: AtomicU64,
    tenant: String,
    gateway: String,
    samples: mpsc::Sender<Sample>,
    control: mpsc::Sender<Control>,
    adapters: Arc<RwLock<Option<Adapters>>>,
    settings: watch::Sender<UplinkSettings>,
    broker: std::sync::Mutex<Broker>,
    config: std::sync::Mutex<Option<GatewayConfig>>,
    /// Device credentials, refreshed by every `apply` before devices start.
    credentials: std::sync::Mutex<Option<Arc<CredentialStore>>>,
    cancel: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    opcua: std::sync::Mutex<crate::adapters::opcua::OpcUaContext>,
}

enum Control {
    Swap(Box<Pipeline>, oneshot::Sender<()>),
}

impl Runtime {
    /// Open the queue and start the pipeline and uplink; no devices run
    /// until a config is applied.
    pub fn start(opts: RuntimeOptions) -> Result<Arc<Self>> {
        let queue = Arc::new(DiskQueue::open(QueueConfig {
            dir: opts.queue_dir,
            max_bytes: weir_crds::gateway::BufferSettings::default().max_bytes,
            overflow: Default::default(),
            fsync: opts.fsync,
            retain: Default::default(),
        })?);
        let cancel = CancellationToken::new();
        let pipeline_stats = Arc::new(PipelineStats::default());
        let uplink_stats = Arc::new(UplinkStats::default());
        let (samples, samples_rx) = mpsc::channel(SAMPLE_CHANNEL);
        let (control, control_rx) = mpsc::channel(4);
        let initial = Pipeline::compile(
            &GatewayConfig::default(),
            TopicBase {
                prefix: "weir".into(),
                tenant: opts.tenant.clone(),
                gateway: opts.gateway.clone(),
            },
            pipeline_stats.clone(),
        )?;
        let settings = uplink_settings(
            &opts.broker,
            &GatewayConfig::default(),
            &opts.tenant,
            &opts.gateway,
            opts.inflight,
        );
        let (settings_tx, settings_rx) = watch::channel(settings);
        let (writes_tx, mut writes_rx) =
            mpsc::channel::<(WriteRequest, oneshot::Sender<WriteResponse>)>(64);
        let adapters: Arc<RwLock<Option<Adapters>>> = Arc::new(RwLock::new(None));
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(pipeline_task(
            initial,
            samples_rx,
            control_rx,
            queue.clone(),
            cancel.clone(),
        )));
        let uplink = Uplink {
            queue: queue.clone(),
            settings: settings_rx,
            stats: uplink_stats.clone(),
            writes: Some(writes_tx),
        };
        tasks.push(tokio::spawn(uplink.run(cancel.clone())));
        let a = adapters.clone();
        tasks.push(tokio::spawn(async move {
            while let Some((req, reply)) = writes_rx.recv().await {
                let a = a.clone();
                tokio::spawn(async move {
                    let guard = a.read().await;
                    let resp = match &*guard {
                        Some(ad) => ad.write(req).await,
                        None => WriteResponse {
                            correlation_id: req.correlation_id,
                            ok: false,
                            error: Some("no config applied yet".into()),
                        },
                    };
                    let _ = reply.send(resp);
                });
            }
        }));
        if let FsyncPolicy::Interval(every) = opts.fsync {
            let q = queue.clone();
            let c = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let mut t = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = c.cancelled() => return,
                        _ = t.tick() => {
                            if let Err(e) = q.sync() {
                                tracing::error!("queue sync failed: {e}");
                            }
                        }
                    }
                }
            }));
        }
        Ok(Arc::new(Self {
            queue,
            pipeline_stats,
            uplink_stats,
            health: Arc::new(HealthTable::default()),
            applied_version: AtomicU64::new(0),
            tenant: opts.tenant,
            gateway: opts.gateway,
            samples,
            control,
            adapters,
            settings: settings_tx,
            broker: std::sync::Mutex::new(opts.broker),
            config: std::sync::Mutex::new(None),
            credentials: std::sync::Mutex::new(None),
            cancel,
            tasks: std::sync::Mutex::new(tasks),
            opcua: Default::default(),
        }))
    }

    /// A sender into the pipeline, as adapters use (tests and benchmarks feed it directly).
    pub fn sample_sender(&self) -> mpsc::Sender<Sample> {
        self.samples.clone()
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Where device credentials come from; set before the first `apply`.
    pub fn set_credentials(&self, store: Arc<CredentialStore>) {
        *self.credentials.lock().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// The device credentials the running config names, for the adapters.
    pub fn credential_source(&self) -> Option<Arc<dyn CredentialSource>> {
        let store = self.credentials.lock().unwrap_or_else(|e| e.into_inner());
        store.clone().map(|s| s as Arc<dyn CredentialSource>)
    }

    /// Compile and switch to `config`. On error nothing changes.
    pub async fn apply(&self, config: &GatewayConfig, version: u64) -> Result<()> {
        let base = TopicBase {
            prefix: config.uplink.topic_prefix.clone(),
            tenant: self.tenant.clone(),
            gateway: self.gateway.clone(),
        };
        let pipeline = Pipeline::compile(config, base, self.pipeline_stats.clone())?;
        // The new devices' credentials, fetched while the old devices still run.
        let store = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(store) = store {
            store.refresh(config).await;
        }
        // Stop the old devices first so no sample is read under the old
        // config after the new rules are in place.
        let mut guard = self.adapters.write().await;
        if let Some(old) = guard.take() {
            old.stop().await;
        }
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::Swap(Box::new(pipeline), tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Err(e) = self.queue.set_limits(
            config.uplink.buffer.max_bytes,
            config.uplink.buffer.overflow,
            config.uplink.buffer.retain.clone(),
        ) {
            tracing::error!("applying queue retention: {e}");
        }
        let broker = self
            .broker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let inflight = self.settings.borrow().inflight;
        let s = uplink_settings(&broker, config, &self.tenant, &self.gateway, inflight);
        self.settings.send_if_modified(|cur| {
            let changed = *cur != s;
            *cur = s;
            changed
        });
        let mut opcua = self.opcua.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if opcua.credentials.is_none() {
            opcua.credentials = self.credential_source();
        }
        *guard = Some(Adapters::start_with(
            config,
            self.samples.clone(),
            self.health.clone(),
            &opcua,
        ));
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(config.clone());
        self.applied_version.store(version, Ordering::Relaxed);
        release_freed_memory();
        tracing::info!(
            version,
            devices = config.devices.len(),
            pipelines = config.pipelines.len(),
            "config applied"
        );
        Ok(())
    }

    /// What OPC UA devices need (data dir, credentials); used from the
    /// next config applied on.
    pub fn set_opcua_context(&self, ctx: crate::adapters::opcua::OpcUaContext) {
        *self.opcua.lock().unwrap_or_else(|e| e.into_inner()) = ctx;
    }

    /// New broker credentials (renewed JWT): the uplink reconnects with them.
    pub fn set_broker(&self, broker: Broker) {
        *self.broker.lock().unwrap_or_else(|e| e.into_inner()) = broker.clone();
        let config = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        let inflight = self.settings.borrow().inflight;
        let s = uplink_settings(&broker, &config, &self.tenant, &self.gateway, inflight);
        self.settings.send_if_modified(|cur| {
            let changed = *cur != s;
            *cur = s;
            changed
        });
    }

    /// Stop devices, process what is buffered, close the queue.
    pub async fn shutdown(&self) {
        if let Some(a) = self.adapters.write().await.take() {
            a.stop().await;
        }
        // Let the pipeline drain the channel before stopping it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.samples.capacity() < SAMPLE_CHANNEL && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.cancel.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.queue.close() {
            tracing::error!("closing queue: {e}");
        }
    }
}

fn uplink_settings(
    broker: &Broker,
    config: &GatewayConfig,
    tenant: &str,
    gateway: &str,
    inflight: u16,
) -> UplinkSettings {
    let u = &config.uplink;
    UplinkSettings {
        urls: broker.urls.clone(),
        client_id: broker.client_id.clone(),
        username: broker.username.clone(),
        password: broker.password.clone(),
        ca_pem: broker.ca_pem.clone(),
        max_readings_per_message: u.max_readings_per_message.max(1) as usize,
        max_bytes_per_message: u.max_bytes_per_message.max(1024) as usize,
        linger: Duration::from_millis(u64::from(u.linger_ms)),
        inflight: inflight.max(1),
        command_topic: Some(command_topic(&u.topic_prefix, tenant, gateway)),
        response_topic: Some(command_response_topic(&u.topic_prefix, tenant, gateway)),
        replay_topic: Some(replay_topic(&u.topic_prefix, tenant, gateway)),
        replay_response_topic: Some(replay_response_topic(&u.topic_prefix, tenant, gateway)),
        state_topic: Some(uplink_state_topic(&u.topic_prefix, tenant, gateway)),
        require_subscriber: u.require_subscriber,
    }
}

async fn pipeline_task(
    mut pipeline: Pipeline,
    mut samples: mpsc::Receiver<Sample>,
    mut control: mpsc::Receiver<Control>,
    queue: Arc<DiskQueue>,
    cancel: CancellationToken,
) {
    let mut out: Vec<PendingFrame> = Vec::with_capacity(1024);
    let mut batch: Vec<Sample> = Vec::with_capacity(1024);
    let mut flush = tokio::time::interval(Duration::from_millis(250));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            Some(c) = control.recv() => match c {
                Control::Swap(p, done) => {
                    // Windows of the old rules close now rather than vanish.
                    pipeline.flush(i64::MAX, &mut out);
                    pipeline = *p;
                    append(&queue, &mut out);
                    let _ = done.send(());
                }
            },
            n = samples.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    return;
                }
                for s in batch.drain(..) {
                    pipeline.process(s, &mut out);
                }
                append(&queue, &mut out);
            }
            _ = flush.tick() => {
                pipeline.flush(now_ms() - 1000, &mut out);
                append(&queue, &mut out);
            }
            _ = cancel.cancelled() => {
                // Take whatever is still buffered.
                while let Ok(s) = samples.try_recv() {
                    pipeline.process(s, &mut out);
                }
                append(&queue, &mut out);
                return;
            }
        }
    }
}

fn append(queue: &DiskQueue, out: &mut Vec<PendingFrame>) {
    if out.is_empty() {
        return;
    }
    if let Err(e) = queue.append(out) {
        // The disk failed: the readings cannot be stored. Count them as dropped.
        let n: u64 = out.iter().map(|f| u64::from(f.readings)).sum();
        queue
            .stats()
            .dropped_readings
            .fetch_add(n, Ordering::Relaxed);
        tracing::error!(readings = n, "queue append failed, readings dropped: {e}");
    }
    out.clear();
}

/// Hand memory freed by config parsing (a bundle with thousands of tags is a
/// large JSON tree for a moment) back to the OS, so the agent's resident size
/// reflects what it runs, not its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only releases free heap pages; it has
        // no preconditions and is safe to call from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}
