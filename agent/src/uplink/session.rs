//! One broker connection: live frames out in order with end-to-end
//! acknowledgement, replays beside them, commands in, the state out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, PubAck, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::message::WriteResponse;

use super::replay::Replays;
use super::state::{uplink_state, STATE_INTERVAL};
use super::subscriber::SubscriberWait;
use super::{
    build_messages, handle_write, same_connection, Batch, Flight, Tag, Uplink, UplinkSettings,
    Window, READ_FRAMES_MAX,
};
use crate::queue::QueueReader;

/// What lives across connections.
pub(super) struct Context<'a> {
    pub reader: &'a mut QueueReader,
    pub cancel: &'a CancellationToken,
    pub backoff: &'a mut Duration,
    pub wait: &'a mut SubscriberWait,
    pub replays: &'a mut Replays,
}

/// A session's bookkeeping of what is in flight.
struct Flights {
    client: AsyncClient,
    batches: VecDeque<(u64, Batch)>,
    next_batch_id: u64,
    /// Published, waiting for the client to tell us its packet id.
    unassigned: VecDeque<Tag>,
    flights: HashMap<u16, Flight>,
    /// Live and replayed messages awaiting PUBACK (the publish window).
    in_flight: usize,
    live_in_flight: usize,
}

impl Flights {
    fn publish(&mut self, topic: String, payload: Vec<u8>, tag: Tag) -> Result<(), String> {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| format!("publish: {e}"))?;
        self.unassigned.push_back(tag);
        match tag {
            Tag::Live(_) => {
                self.in_flight += 1;
                self.live_in_flight += 1;
            }
            Tag::Replay => self.in_flight += 1,
            Tag::Other => {}
        }
        Ok(())
    }

    /// Answers and the state: best effort, nothing waits for them.
    fn publish_other(&mut self, topic: &Option<String>, body: &impl serde::Serialize) {
        if let Some(t) = topic {
            let body = serde_json::to_vec(body).unwrap_or_default();
            if self
                .client
                .try_publish(t.clone(), QoS::AtLeastOnce, false, body)
                .is_ok()
            {
                self.unassigned.push_back(Tag::Other);
            }
        }
    }
}

impl Uplink {
    /// One connection. `Ok` only when cancelled.
    pub(super) async fn session(
        &mut self,
        opts: MqttOptions,
        s: &UplinkSettings,
        ctx: Context<'_>,
    ) -> Result<(), String> {
        let Context {
            reader,
            cancel,
            backoff,
            wait,
            replays,
        } = ctx;
        let mut s = s.clone();
        let (client, mut el): (AsyncClient, EventLoop) =
            AsyncClient::new(opts, usize::from(s.inflight) * 2 + 64);
        // Nagle's algorithm holds a small publish (or a write's answer)
        // back until the broker's delayed ACK, about 40 ms a hop on Linux;
        // batching is the linger's job, not the socket's.
        let mut net = el.options.network_options();
        net.set_tcp_nodelay(true);
        el.options.set_network_options(net);
        // Everything not acknowledged goes again, in order; so does a replay
        // that was running.
        reader.seek(self.queue.first_unacked());
        wait.reconnected();
        replays.restart();
        let mut f = Flights {
            client,
            batches: VecDeque::new(),
            next_batch_id: 0,
            unassigned: VecDeque::new(),
            flights: HashMap::new(),
            in_flight: 0,
            live_in_flight: 0,
        };
        let mut connected = false;
        let mut linger_deadline: Option<Instant> = None;
        let (resp_tx, mut resp_rx) = mpsc::channel::<WriteResponse>(64);
        let mut settings_rx = self.settings.clone();
        // The first state goes out on the ConnAck; the timer follows.
        let mut state_tick =
            tokio::time::interval_at(Instant::now() + STATE_INTERVAL, STATE_INTERVAL);
        state_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let window = usize::from(s.inflight);
            let room = connected && f.in_flight < window && wait.can_send();
            // A replay takes at most a quarter of the window.
            let replay_room = connected && f.in_flight < window && replays.can_send(window / 4);
            let wake_at = wait.wake_at();
            // Nagle's rule: linger only while live messages await their
            // PUBACK. Then the pipe is busy and what arrives meanwhile can
            // fill messages; once every PUBACK is in (or with nothing in
            // flight to begin with) what is queued goes at once, instead of
            // every reading waiting `linger` on an idle connection.
            let pipe_idle = f.live_in_flight == 0;
            let wait_data = async {
                match linger_deadline {
                    Some(_) if pipe_idle => {}
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => self.queue.wait_for(reader.position()).await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = f.client.try_disconnect();
                    return Ok(());
                }
                _ = settings_rx.changed() => {
                    let new = settings_rx.borrow().clone();
                    if !same_connection(&new, &s) {
                        return Err("broker or credentials changed; reconnecting".into());
                    }
                    // Batching limits apply from the next batch on.
                    s = new;
                }
                Some(resp) = resp_rx.recv() => f.publish_other(&s.response_topic, &resp),
                _ = state_tick.tick() => {
                    // Retention's age limit also applies while idle.
                    if let Err(e) = self.queue.trim() {
                        tracing::warn!("trimming retained frames: {e}");
                    }
                    if connected {
                        f.publish_other(&s.state_topic, &uplink_state(&self.queue));
                    }
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
                    wait.wake();
                }
                ev = el.poll() => {
                    let ev = ev.map_err(|e| e.to_string())?;
                    match ev {
                        Event::Incoming(Packet::ConnAck(_)) => {
                            connected = true;
                            *backoff = Duration::from_millis(100);
                            self.stats.connected.store(true, Ordering::Relaxed);
                            tracing::info!("uplink connected");
                            if let (Some(t), Some(_)) = (&s.command_topic, &self.writes) {
                                let _ = f.client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                            }
                            if let Some(t) = &s.replay_topic {
                                let _ = f.client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                            }
                            f.publish_other(&s.state_topic, &uplink_state(&self.queue));
                        }
                        Event::Outgoing(Outgoing::Publish(pkid)) => {
                            if let Some(tag) = f.unassigned.pop_front() {
                                if tag != Tag::Other {
                                    f.flights.insert(pkid, Flight { tag, sent: Instant::now() });
                                }
                            }
                        }
                        Event::Incoming(Packet::PubAck(ack)) => {
                            self.on_puback(&ack, &s, &mut f, reader, wait, replays)?;
                        }
                        Event::Incoming(Packet::Publish(p)) => {
                            if s.replay_topic.as_ref().is_some_and(|t| p.topic == t.as_bytes()) {
                                if let Err(refused) = replays.request(&p.payload) {
                                    tracing::info!(error = ?refused.error, "replay request refused");
                                    self.stats.replays.fetch_add(1, Ordering::Relaxed);
                                    f.publish_other(&s.replay_response_topic, &refused);
                                }
                                self.finish_replay(&s, &mut f, replays);
                            } else if let Some(w) = &self.writes {
                                handle_write(&p.payload, w.clone(), resp_tx.clone());
                            }
                        }
                        Event::Incoming(Packet::Disconnect(d)) => {
                            return Err(format!("broker disconnected us: {:?}", d.reason_code));
                        }
                        _ => {}
                    }
                }
                _ = std::future::ready(()), if replay_room => {
                    let msgs = replays
                        .next_messages(s.max_readings_per_message, s.max_bytes_per_message)
                        .map_err(|e| e.to_string())?;
                    for (topic, payload, frames) in msgs {
                        f.publish(topic, payload, Tag::Replay)?;
                        self.stats.replayed_frames.fetch_add(frames as u64, Ordering::Relaxed);
                    }
                    self.finish_replay(&s, &mut f, replays);
                }
                _ = wait_data, if room => {
                    let available = self.queue.next_seq().saturating_sub(reader.position());
                    if available == 0 {
                        linger_deadline = None;
                        continue;
                    }
                    // A message's worth of readings waits unsent (queued
                    // readings not yet acknowledged, less those in flight).
                    let in_flight: u64 = f.batches.iter().map(|(_, b)| b.readings).sum();
                    let unsent = self
                        .queue
                        .stats()
                        .depth_readings
                        .load(Ordering::Relaxed)
                        .saturating_sub(in_flight);
                    let full = unsent as usize >= s.max_readings_per_message;
                    let busy = f.live_in_flight > 0;
                    match linger_deadline {
                        None if busy && !full && !s.linger.is_zero() => {
                            linger_deadline = Some(Instant::now() + s.linger);
                            continue;
                        }
                        Some(d) if busy && !full && Instant::now() < d => continue,
                        _ => {}
                    }
                    linger_deadline = None;
                    self.send_live(&s, &mut f, reader)?;
                }
            }
        }
    }

    /// Read what fits the free window and publish it as one batch.
    fn send_live(
        &self,
        s: &UplinkSettings,
        f: &mut Flights,
        reader: &mut QueueReader,
    ) -> Result<(), String> {
        let free = usize::from(s.inflight).saturating_sub(f.in_flight).max(1);
        // Frames can hold many readings (a group of 500 tags is a whole
        // message): take what fits the publish window so the client's
        // request channel never overflows on a backlog.
        let mut window = Window::new(free, usize::from(s.inflight), s.max_readings_per_message);
        let max_bytes = window.bytes(s.max_bytes_per_message);
        let records = reader
            .read_while(READ_FRAMES_MAX, max_bytes, |r| window.admit(r))
            .map_err(|e| e.to_string())?;
        if records.is_empty() {
            return Ok(());
        }
        let end_seq = records.last().expect("non-empty").seq + 1;
        let readings: u64 = records.iter().map(|r| u64::from(r.readings)).sum();
        let msgs = build_messages(records, s.max_readings_per_message, s.max_bytes_per_message);
        let id = f.next_batch_id;
        f.next_batch_id += 1;
        f.batches.push_back((
            id,
            Batch {
                end_seq,
                readings,
                outstanding: msgs.len(),
                failed: false,
            },
        ));
        for (topic, payload, frames) in msgs {
            f.publish(topic, payload, Tag::Live(id))?;
            self.stats
                .frames_published
                .fetch_add(frames as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Answer the running replay if it is complete.
    fn finish_replay(&self, s: &UplinkSettings, f: &mut Flights, replays: &mut Replays) {
        while let Some(resp) = replays.finish() {
            self.answer_replay(s, f, resp);
        }
    }

    fn answer_replay(
        &self,
        s: &UplinkSettings,
        f: &mut Flights,
        resp: weir_crds::message::ReplayResponse,
    ) {
        tracing::info!(
            from_seq = resp.from_seq,
            to_seq = resp.to_seq,
            replayed = resp.replayed_frames,
            missing_ranges = resp.missing.len(),
            "replay done"
        );
        self.stats.replays.fetch_add(1, Ordering::Relaxed);
        f.publish_other(&s.replay_response_topic, &resp);
    }

    fn on_puback(
        &self,
        ack: &PubAck,
        s: &UplinkSettings,
        f: &mut Flights,
        reader: &mut QueueReader,
        wait: &mut SubscriberWait,
        replays: &mut Replays,
    ) -> Result<(), String> {
        let Some(flight) = f.flights.remove(&ack.pkid) else {
            return Ok(());
        };
        f.in_flight = f.in_flight.saturating_sub(1);
        let no_subscriber = ack.reason == PubAckReason::NoMatchingSubscribers;
        if !matches!(ack.reason, PubAckReason::Success) && !no_subscriber {
            self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(format!("broker refused a publish: {:?}", ack.reason));
        }
        let batch_id = match flight.tag {
            Tag::Live(id) => id,
            Tag::Replay => {
                // The asker subscribes; a replay is not retried for want of readers.
                if let Some(resp) = replays.acked() {
                    self.answer_replay(s, f, resp);
                    self.finish_replay(s, f, replays);
                }
                return Ok(());
            }
            Tag::Other => return Ok(()),
        };
        f.live_in_flight = f.live_in_flight.saturating_sub(1);
        self.stats.latency.observe(flight.sent.elapsed());
        self.stats.messages_acked.fetch_add(1, Ordering::Relaxed);
        let undelivered = no_subscriber && s.require_subscriber;
        if let Some((_, b)) = f.batches.iter_mut().find(|(id, _)| *id == batch_id) {
            b.outstanding -= 1;
            b.failed |= undelivered;
        }
        if undelivered {
            wait.no_subscriber(&self.stats);
        } else {
            wait.delivered(&self.stats);
        }
        // Move the cursor over every leading batch that is complete.
        let mut acked_to = None;
        let mut readings = 0;
        while f
            .batches
            .front()
            .is_some_and(|(_, b)| b.outstanding == 0 && !b.failed)
        {
            let (_, b) = f.batches.pop_front().expect("checked");
            acked_to = Some(b.end_seq);
            readings += b.readings;
        }
        if let Some(end) = acked_to {
            self.stats
                .readings_acked
                .fetch_add(readings, Ordering::Relaxed);
            self.queue.ack(end, readings).map_err(|e| e.to_string())?;
        }
        if wait.must_rewind(f.live_in_flight) {
            // Everything after the cursor goes again once someone listens.
            f.batches.clear();
            reader.seek(self.queue.first_unacked());
            wait.rewound();
        }
        Ok(())
    }
}
