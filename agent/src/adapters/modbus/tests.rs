use super::*;

fn t(i: u16, a: &str, d: DataType) -> (u16, ModbusAddress, DataType) {
    (i, ModbusAddress::parse(a).unwrap(), d)
}

#[test]
fn contiguous_tags_share_a_request_within_the_limit() {
    let tags = vec![
        t(0, "1!400001#BB", DataType::Float32), // 0..2
        t(1, "1!400003", DataType::Int16),      // 2
        t(2, "1!400004#BB", DataType::Float64), // 3..7
        t(3, "1!400010", DataType::Uint16),     // gap: new request
        t(4, "2!400005", DataType::Int16),      // other slave
        t(5, "1!300001", DataType::Int16),      // other area
        t(6, "1!000001", DataType::Bool),
        t(7, "1!000002", DataType::Bool),
        t(8, "1!400001.3", DataType::Bit), // overlaps register 0
    ];
    let plan = plan_requests(&tags, 125);
    let summary: Vec<(u8, Area, u16, u16, usize)> = plan
        .iter()
        .map(|r| (r.slave, r.area, r.start, r.count, r.tags.len()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Area::Coil, 0, 2, 2),
            (1, Area::InputRegister, 0, 1, 1),
            (1, Area::HoldingRegister, 0, 7, 4),
            (1, Area::HoldingRegister, 9, 1, 1),
            (2, Area::HoldingRegister, 4, 1, 1),
        ]
    );
    // A small limit splits the run.
    let plan = plan_requests(&tags[..3], 4);
    assert_eq!(
        plan.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
        vec![(0, 3), (3, 4)]
    );
}

use std::collections::BTreeMap;

use server::{serve, MemoryDevice};
use weir_crds::message::{TagValue, WriteRequest};

fn device(
    name: &str,
    addr: std::net::SocketAddr,
    interval_ms: u32,
    timeout_ms: u32,
    tags: serde_json::Value,
) -> Device {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "adapter": "modbusTcp",
        "modbus": {"host": addr.ip().to_string(), "port": addr.port(), "timeoutMs": timeout_ms, "retries": 0, "maxBackoffMs": 200},
        "groups": [{"name": "g", "intervalMs": interval_ms, "tags": tags}]
    }))
    .unwrap()
}

fn values(s: &Sample) -> BTreeMap<String, TagValue> {
    s.values
        .iter()
        .map(|(i, v)| (s.schema.tags[*i as usize].clone(), v.clone()))
        .collect()
}

#[tokio::test]
async fn reads_every_type_and_order_in_coalesced_requests() {
    let dev = MemoryDevice::default();
    // float32 123.456 as ABCD at 0..2, CDAB at 2..4; int16 -2 at 4; uint32 DCBA 70000 at 5..7;
    // bits in 7; "PUMP" at 8..10; float64 BB at 20..24 (a second request).
    dev.set_holding(0, &[0x42F6, 0xE979, 0xE979, 0x42F6, 0xFFFE]);
    let u = 70000u32.to_be_bytes();
    dev.set_holding(
        5,
        &[
            u16::from_be_bytes([u[3], u[2]]),
            u16::from_be_bytes([u[1], u[0]]),
        ],
    );
    dev.set_holding(7, &[0b1010]);
    dev.set_holding(8, &[0x5055, 0x4D50]);
    let f = (-2.5f64).to_be_bytes();
    dev.set_holding(
        20,
        &[
            u16::from_be_bytes([f[0], f[1]]),
            u16::from_be_bytes([f[2], f[3]]),
            u16::from_be_bytes([f[4], f[5]]),
            u16::from_be_bytes([f[6], f[7]]),
        ],
    );
    dev.set_input(0, &[1234]);
    dev.set_coil(0, true);
    let addr = serve(dev.clone()).await.unwrap();
    let d = device(
        "plc",
        addr,
        100,
        500,
        serde_json::json!([
            {"name": "abcd", "address": "1!400001#BB", "dataType": "float32"},
            {"name": "cdab", "address": "1!400003#LB", "dataType": "float32"},
            {"name": "i16", "address": "1!400005", "dataType": "int16"},
            {"name": "u32", "address": "1!400006#LL", "dataType": "uint32"},
            {"name": "b1", "address": "1!400008.1", "dataType": "bit"},
            {"name": "b2", "address": "1!400008.2", "dataType": "bit"},
            {"name": "name", "address": "1!400009.4H", "dataType": "string"},
            {"name": "f64", "address": "1!400021#BB", "dataType": "float64"},
            {"name": "scaled", "address": "1!300001", "dataType": "uint16", "scale": 0.1},
            {"name": "run", "address": "1!000001", "dataType": "bool"}
        ]),
    );
    let (tx, mut rx) = mpsc::channel(16);
    let (_wtx, wrx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let health = Arc::new(HealthTable::default());
    let mut handles = Vec::new();
    let mut buses = Buses::default();
    spawn_device(
        &d,
        &mut buses,
        tx,
        wrx,
        &cancel,
        health.clone(),
        &mut handles,
    );
    let task = handles.pop().unwrap();
    let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let v = values(&s);
    assert_eq!(v["abcd"], TagValue::Float(123.456));
    assert_eq!(v["cdab"], TagValue::Float(123.456));
    assert_eq!(v["i16"], TagValue::Int(-2));
    assert_eq!(v["u32"], TagValue::Int(70000));
    assert_eq!(v["b1"], TagValue::Bool(true));
    assert_eq!(v["b2"], TagValue::Bool(false));
    assert_eq!(v["name"], TagValue::Text("PUMP".into()));
    assert_eq!(v["f64"], TagValue::Float(-2.5));
    // Raw here; the tag's scale is applied by the pipeline.
    assert_eq!(v["scaled"], TagValue::Int(1234));
    assert_eq!(v["run"], TagValue::Bool(true));
    // Holding registers 0..10 in one request, 20..24 in another; one input, one coil read.
    let reqs = dev.requests();
    assert_eq!(
        reqs.iter()
            .filter(|r| r.0 == 3)
            .take(2)
            .cloned()
            .collect::<Vec<_>>(),
        vec![(3, 0, 10), (3, 20, 4)]
    );
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(health.snapshot()[0].state, DeviceState::Ok);
}

#[tokio::test]
async fn a_hung_device_times_out_without_delaying_a_healthy_one() {
    let hung = MemoryDevice::default();
    hung.set_delay(Duration::from_secs(30));
    let hung_addr = serve(hung).await.unwrap();
    let good = MemoryDevice::default();
    good.set_holding(0, &[7]);
    let good_addr = serve(good).await.unwrap();
    let tags = serde_json::json!([{"name": "v", "address": "1!400001", "dataType": "int16"}]);
    let config = weir_crds::gateway::GatewayConfig {
        devices: vec![
            device("hung", hung_addr, 100, 200, tags.clone()),
            device("good", good_addr, 100, 200, tags),
        ],
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let health = Arc::new(HealthTable::default());
    let adapters = crate::adapters::Adapters::start(&config, tx, health.clone());
    let start = std::time::Instant::now();
    let mut good_samples = 0;
    let mut hung_errors = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            match s.schema.device.as_str() {
                "good" => {
                    assert_eq!(values(&s)["v"], TagValue::Int(7));
                    good_samples += 1;
                }
                _ => {
                    assert_eq!(s.errors, vec![(0, ErrorCode::Timeout as i32)]);
                    hung_errors += 1;
                }
            }
        }
    }
    // 100 ms polling for 1.5 s: the healthy device kept its pace.
    assert!(
        good_samples >= 8,
        "good device produced only {good_samples} samples"
    );
    assert!(hung_errors >= 1, "the hung device reports timeouts");
    let h: BTreeMap<String, DeviceState> = health
        .snapshot()
        .into_iter()
        .map(|d| (d.name, d.state))
        .collect();
    assert_eq!(h["hung"], DeviceState::Down);
    assert_eq!(h["good"], DeviceState::Ok);
    adapters.stop().await;
}

#[tokio::test]
async fn writes_reach_the_device_and_fail_clearly() {
    let dev = MemoryDevice::default();
    dev.set_holding(9, &[0b0001]);
    let addr = serve(dev.clone()).await.unwrap();
    let config = weir_crds::gateway::GatewayConfig {
        devices: vec![device(
            "plc",
            addr,
            1000,
            500,
            serde_json::json!([
                {"name": "setpoint", "address": "1!400001#LB", "dataType": "float32", "attributes": ["read", "write"]},
                {"name": "level", "address": "1!400003", "dataType": "int16", "attributes": ["read", "write"], "scale": 0.1},
                {"name": "flag", "address": "1!400010.2", "dataType": "bit", "attributes": ["read", "write"]},
                {"name": "pump", "address": "1!000001", "dataType": "bool", "attributes": ["read", "write"]},
                {"name": "ro", "address": "1!400020", "dataType": "int16"}
            ]),
        )],
        ..Default::default()
    };
    let (tx, _rx) = mpsc::channel(1024);
    let adapters = crate::adapters::Adapters::start(&config, tx, Arc::new(HealthTable::default()));
    let w = |tag: &str, v: TagValue| WriteRequest {
        correlation_id: format!("c-{tag}"),
        device: "plc".into(),
        tag: tag.into(),
        value: v,
    };
    let r = adapters
        .write(w("setpoint", TagValue::Float(123.456)))
        .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.correlation_id, "c-setpoint");
    assert_eq!((dev.holding(0), dev.holding(1)), (0xE979, 0x42F6));
    assert!(adapters.write(w("level", TagValue::Float(12.3))).await.ok);
    assert_eq!(
        dev.holding(2),
        123,
        "engineering value 12.3 at scale 0.1 is raw 123"
    );
    assert!(adapters.write(w("flag", TagValue::Bool(true))).await.ok);
    assert_eq!(dev.holding(9), 0b0101, "only bit 2 changed");
    assert!(adapters.write(w("pump", TagValue::Bool(true))).await.ok);
    let r = adapters.write(w("ro", TagValue::Int(1))).await;
    assert!(!r.ok && r.error.unwrap().contains("not writable"));
    let r = adapters.write(w("nope", TagValue::Int(1))).await;
    assert!(!r.ok && r.error.unwrap().contains("no tag"));
    let r = adapters
        .write(WriteRequest {
            correlation_id: "x".into(),
            device: "ghost".into(),
            tag: "v".into(),
            value: TagValue::Int(1),
        })
        .await;
    assert!(!r.ok);
    adapters.stop().await;
}

#[tokio::test]
async fn a_write_waits_for_one_read_not_a_whole_poll_round() {
    // 10 tags 200 registers apart: 10 read requests per round; the device
    // answers each after 20 ms, so a round takes 200 ms and, polled every
    // 50 ms, the device is always in one.
    let dev = MemoryDevice::default();
    let addr = serve(dev.clone()).await.unwrap();
    dev.set_delay(Duration::from_millis(20));
    let mut tags: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "address": format!("1!4{:05}", 1 + i * 200), "dataType": "int16"}))
        .collect();
    tags.push(serde_json::json!({"name": "sp", "address": "1!402500", "dataType": "int16", "attributes": ["read", "write"]}));
    let config = weir_crds::gateway::GatewayConfig {
        devices: vec![device(
            "plc",
            addr,
            50,
            1000,
            serde_json::Value::Array(tags),
        )],
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let adapters = crate::adapters::Adapters::start(&config, tx, Arc::new(HealthTable::default()));
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let t0 = std::time::Instant::now();
        let r = adapters
            .write(WriteRequest {
                correlation_id: format!("w{i}"),
                device: "plc".into(),
                tag: "sp".into(),
                value: TagValue::Int(i),
            })
            .await;
        assert!(r.ok, "{r:?}");
        worst = worst.max(t0.elapsed());
        // Land somewhere else in the next round.
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    // One read in progress (20 ms) and the write (20 ms), with room for a
    // slow machine; waiting behind the round would take up to 220 ms.
    assert!(worst < Duration::from_millis(120), "a write took {worst:?}");
    adapters.stop().await;
}

#[test]
fn inter_frame_delay_is_three_and_a_half_characters_at_least_1750_us() {
    let line =
        |baud: u32, parity: &str, delay: Option<u32>| -> weir_crds::gateway::SerialSettings {
            serde_json::from_value(serde_json::json!({
                "port": "/dev/ttyS1", "baudRate": baud, "parity": parity, "interFrameDelayMs": delay
            }))
            .unwrap()
        };
    let us = |d: Duration| d.as_micros();
    // 8N1: 10 bits a character; 3.5 × 10 / 9600 s.
    assert_eq!(us(conn::inter_frame_delay(&line(9600, "none", None))), 3645);
    // 8E1: 11 bits.
    assert_eq!(us(conn::inter_frame_delay(&line(9600, "even", None))), 4010);
    // Fast lines keep the spec's fixed 1.75 ms.
    assert_eq!(
        us(conn::inter_frame_delay(&line(115200, "none", None))),
        1750
    );
    // Set explicitly, it is used as is (0 too).
    assert_eq!(
        conn::inter_frame_delay(&line(9600, "none", Some(0))),
        Duration::ZERO
    );
    assert_eq!(
        conn::inter_frame_delay(&line(9600, "none", Some(20))),
        Duration::from_millis(20)
    );
}
