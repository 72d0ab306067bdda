//! The scenarios' broker: weir-testkit's Mosquitto, persistent, so the
//! historian's QoS 1 session and everything queued for it survive a broker
//! restart (scenario 3 stops the broker for 30 s under 50,000 readings/s).

use weir_testkit::Mosquitto;

/// A broker of the scenario's own on a free port; `stop` and `restart` keep
/// its sessions and queues.
pub async fn broker() -> Mosquitto {
    Mosquitto::builder()
        .persistent()
        .config("max_queued_messages 1000000")
        .config("max_inflight_messages 0")
        .start()
        .await
}

/// A broker WITHOUT persistence, as a Mosquitto or EMQX pod restarted by
/// Kubernetes is: a kill loses every session and every queued message. The
/// queue limits match [`broker`], so what is lost is lost to the kill, not
/// to a full queue.
pub async fn broker_in_memory() -> Mosquitto {
    Mosquitto::builder()
        .config("max_queued_messages 1000000")
        .config("max_inflight_messages 0")
        .start()
        .await
}
