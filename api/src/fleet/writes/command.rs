//! One write request over MQTT, the way an operator's setpoint reaches an
//! agent: connect to the gateway's broker with the api's own identity,
//! subscribe to the gateway's `cmd/write/resp`, publish the request on its
//! `cmd/write` (QoS 1) once the subscription is granted (so the answer
//! cannot be missed), and wait for the answer carrying the request's
//! correlation id. Answers to other requests are ignored.
//!
//! The agent connects with a clean session, so a request published while
//! it is away is dropped by the broker rather than applied later: an
//! unanswered request ends in [`CommandError::NoAnswer`], and the write
//! may or may not have reached the device.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use tokio::time::Instant;
use weir_crds::message::{WriteRequest, WriteResponse};

/// Why no answer came back.
#[derive(Debug, PartialEq)]
pub enum CommandError {
    /// The broker could not be reached, refused the api's login, or refused
    /// its subscription, before anything was published.
    Broker(String),
    /// The request was published but no answer came in time.
    NoAnswer,
}

/// Publish `req` on `topic` and wait until `deadline` for its answer on
/// `resp_topic`.
pub async fn round_trip(
    opts: MqttOptions,
    topic: &str,
    resp_topic: &str,
    req: &WriteRequest,
    deadline: Instant,
) -> Result<WriteResponse, CommandError> {
    let payload = serde_json::to_vec(req).map_err(|e| CommandError::Broker(e.to_string()))?;
    let (client, mut events) = AsyncClient::new(opts, 16);
    let mut published = false;
    let outcome = tokio::time::timeout_at(deadline, async {
        loop {
            let event = match events.poll().await {
                Ok(e) => e,
                Err(e) if published => {
                    // The connection dropped after the request went out:
                    // keep waiting (rumqttc reconnects) for the answer.
                    tracing::debug!(error = %e, "write: broker connection lost while waiting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(CommandError::Broker(e.to_string())),
            };
            match event {
                Event::Incoming(Packet::ConnAck(a)) if a.code != ConnectReturnCode::Success => {
                    return Err(CommandError::Broker(format!(
                        "the broker refused the api's login ({:?})",
                        a.code
                    )));
                }
                Event::Incoming(Packet::ConnAck(_)) if !published => {
                    client
                        .subscribe(resp_topic, QoS::AtLeastOnce)
                        .await
                        .map_err(|e| CommandError::Broker(e.to_string()))?;
                }
                Event::Incoming(Packet::SubAck(s)) if !published => {
                    if s.return_codes.contains(&SubscribeReasonCode::Failure) {
                        return Err(CommandError::Broker(format!(
                            "the broker refused the api's subscription to {resp_topic} \
                             (its ACL for the api's identity)"
                        )));
                    }
                    client
                        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                        .await
                        .map_err(|e| CommandError::Broker(e.to_string()))?;
                    published = true;
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == resp_topic => {
                    match serde_json::from_slice::<WriteResponse>(&p.payload) {
                        Ok(r) if r.correlation_id == req.correlation_id => return Ok(r),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "write: an answer that is not a WriteResponse")
                        }
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    match outcome {
        Ok(r) => r,
        Err(_) if published => Err(CommandError::NoAnswer),
        Err(_) => Err(CommandError::Broker(
            "the broker did not let the api connect and subscribe in time".into(),
        )),
    }
}
