//! The event bus behind the server-sent event streams (SPEC §11): the admin stream
//! (`GET /api/admin/events/stream`, by topic) and each chat's stream ride it alike.
//!
//! Every event gets an id, in publishing order, and is kept in a ring of the last
//! `events.ring_size` so that a client reconnecting with `Last-Event-ID` receives exactly what it
//! missed. Ids start at the process's start time shifted left 20 bits, so an id from an earlier
//! process is older than anything kept and reads as a gap (`reset`), never as a recent id. Each subscriber has a queue of its own, bounded (`events.subscriber_queue`), and
//! filled at publishing time with only the events it asked for: publishing never waits on a
//! subscriber — one whose queue is full is dropped on the spot (and counted); its stream ends
//! and its client reconnects from its last id.
//!
//! Nothing of a topic is kept until its first subscriber arrives, so a service nobody watches
//! pays one atomic load per event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::monitoring::series;

/// What an event is about; a subscriber asks for a set of topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Chats,
    Audit,
    Retention,
    Health,
    Agents,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Chats,
        Topic::Audit,
        Topic::Retention,
        Topic::Health,
        Topic::Agents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Chats => "chats",
            Topic::Audit => "audit",
            Topic::Retention => "retention",
            Topic::Health => "health",
            Topic::Agents => "agents",
        }
    }

    pub fn parse(text: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.as_str() == text)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Ids of one process start here: its start time (Unix ms) shifted left 20 bits — a million
/// events a millisecond before one process's ids could reach the next one's.
fn first_id() -> u64 {
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    start_ms << 20
}

/// A set of topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topics(u8);

impl Topics {
    pub const ALL: Topics = Topics(0b1_1111);

    pub fn of(topics: impl IntoIterator<Item = Topic>) -> Topics {
        Topics(topics.into_iter().fold(0, |set, topic| set | topic.bit()))
    }

    fn contains(self, topic: Topic) -> bool {
        self.0 & topic.bit() != 0
    }
}

/// One published event.
#[derive(Debug)]
pub struct BusEvent {
    pub id: u64,
    pub topic: Topic,
    /// The SSE event name, e.g. `message.created`.
    pub name: &'static str,
    /// The chat a `chats` event concerns, and the message's `seq` in it.
    pub chat: Option<(Arc<str>, u64)>,
    /// The event's JSON.
    pub data: String,
}

/// What a subscriber asked for.
#[derive(Debug, Clone)]
pub struct Interest {
    pub topics: Topics,
    /// Only this chat's events.
    pub chat: Option<Arc<str>>,
}

impl Interest {
    fn wants(&self, event: &BusEvent) -> bool {
        self.topics.contains(event.topic)
            && self
                .chat
                .as_ref()
                .is_none_or(|chat| event.chat.as_ref().is_some_and(|(of, _)| of == chat))
    }
}

/// Where a reconnecting subscriber resumes.
#[derive(Debug, Clone, Copy)]
pub enum Resume {
    /// Live events only.
    Now,
    /// After this bus event id (the admin stream's `Last-Event-ID`).
    AfterId(u64),
    /// After this message `seq` of the subscriber's chat (a chat stream's `Last-Event-ID`).
    AfterSeq(u64),
}

/// A subscription: the events it missed, then its queue; `gap` when some it missed are no
/// longer kept (the client should reload what it shows).
pub struct Subscription {
    pub missed: Vec<Arc<BusEvent>>,
    pub gap: bool,
    pub live: mpsc::Receiver<Arc<BusEvent>>,
}

#[derive(Debug, Clone, Copy)]
pub struct BusSettings {
    pub ring_size: usize,
    pub subscriber_queue: usize,
}

pub struct Bus {
    settings: BusSettings,
    state: Mutex<State>,
    /// The topics that have had a subscriber: from then on their events are kept.
    watched: AtomicU8,
    /// Events published since their topic was first watched.
    published: AtomicU64,
    closing: watch::Sender<bool>,
}

struct State {
    next_id: u64,
    ring: VecDeque<Arc<BusEvent>>,
    subscribers: Vec<(Interest, mpsc::Sender<Arc<BusEvent>>)>,
}

impl Bus {
    pub fn new(settings: BusSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State {
                next_id: first_id(),
                ring: VecDeque::with_capacity(settings.ring_size),
                subscribers: Vec::new(),
            }),
            watched: AtomicU8::new(0),
            published: AtomicU64::new(0),
            closing: watch::Sender::new(false),
        }
    }

    /// Whether `topic` has had a subscriber: a publisher may skip building its events until then.
    pub fn watched(&self, topic: Topic) -> bool {
        self.watched.load(Relaxed) & topic.bit() != 0
    }

    /// Publishes an event; `data` is built only when its topic is watched.
    pub fn publish(
        &self,
        topic: Topic,
        name: &'static str,
        chat: Option<(&str, u64)>,
        data: impl FnOnce() -> String,
    ) {
        if !self.watched(topic) {
            return;
        }
        let data = data();
        let chat = chat.map(|(id, seq)| (Arc::from(id), seq));
        let mut state = self.state.lock();
        let event = Arc::new(BusEvent {
            id: state.next_id,
            topic,
            name,
            chat,
            data,
        });
        state.next_id += 1;
        if state.ring.len() == self.settings.ring_size {
            state.ring.pop_front();
        }
        state.ring.push_back(event.clone());
        state.subscribers.retain(|(interest, queue)| {
            if !interest.wants(&event) {
                return !queue.is_closed();
            }
            match queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    series::sse_dropped();
                    tracing::warn!(
                        event = "sse_dropped",
                        "an event-stream subscriber fell behind and was dropped"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.published.fetch_add(1, Relaxed);
    }

    /// Subscribes to `interest`, resuming after `resume`. What it missed and its live queue are
    /// taken under one lock, so no event falls between them or comes twice; the lock is held only
    /// to copy the ring's tail (the writer publishes under it).
    pub fn subscribe(&self, interest: Interest, resume: Resume) -> Subscription {
        self.watched.fetch_or(interest.topics.0, Relaxed);
        let (sender, live) = mpsc::channel(self.settings.subscriber_queue);
        let (tail, oldest, next_id) = {
            let mut state = self.state.lock();
            let from = match resume {
                Resume::Now => state.ring.len(),
                Resume::AfterId(id) => state.ring.partition_point(|event| event.id <= id),
                Resume::AfterSeq(_) => 0,
            };
            let tail: Vec<Arc<BusEvent>> = state.ring.range(from..).cloned().collect();
            let oldest = state.ring.front().map_or(state.next_id, |event| event.id);
            let next_id = state.next_id;
            state.subscribers.push((interest.clone(), sender));
            (tail, oldest, next_id)
        };
        let (missed, gap) = missed(tail, &interest, resume, oldest, next_id);
        Subscription { missed, gap, live }
    }

    /// Open subscriptions.
    pub fn subscribers(&self) -> usize {
        self.state
            .lock()
            .subscribers
            .iter()
            .filter(|(_, queue)| !queue.is_closed())
            .count()
    }

    /// Events published since the start.
    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Turns true when the service stops: streams end then.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every stream (shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// The events of `tail` (the ring from `resume` on) that `interest` wants, and whether older
/// ones it missed are gone. `oldest` is the ring's first id, `next_id` the next to be given.
fn missed(
    tail: Vec<Arc<BusEvent>>,
    interest: &Interest,
    resume: Resume,
    oldest: u64,
    next_id: u64,
) -> (Vec<Arc<BusEvent>>, bool) {
    let missed: Vec<Arc<BusEvent>> = tail
        .into_iter()
        .filter(|event| interest.wants(event))
        .filter(|event| match resume {
            Resume::AfterSeq(seq) => event.chat.as_ref().is_some_and(|(_, of)| *of > seq),
            Resume::Now | Resume::AfterId(_) => true,
        })
        .collect();
    let gap = match resume {
        Resume::Now => false,
        // One from before the oldest kept (an earlier process's, too), or not yet given.
        Resume::AfterId(id) => id.saturating_add(1) < oldest || id >= next_id,
        // The ring cannot know messages it never kept: the caller also compares with the chat.
        Resume::AfterSeq(seq) => missed
            .first()
            .and_then(|event| event.chat.as_ref())
            .is_some_and(|(_, first)| *first > seq.saturating_add(1)),
    };
    (missed, gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(ring_size: usize, subscriber_queue: usize) -> Bus {
        Bus::new(BusSettings {
            ring_size,
            subscriber_queue,
        })
    }

    fn everything() -> Interest {
        Interest {
            topics: Topics::ALL,
            chat: None,
        }
    }

    fn publish(bus: &Bus, n: u64) {
        bus.publish(Topic::Chats, "message.created", Some(("c", n)), || {
            n.to_string()
        });
    }

    #[test]
    fn a_reconnect_gets_exactly_what_it_missed() {
        let bus = bus(10, 10);
        let mut first = bus.subscribe(everything(), Resume::Now);
        for n in 1..=3 {
            publish(&bus, n);
        }
        let seen: Vec<u64> = (0..3)
            .map(|_| first.live.try_recv().expect("an event").id)
            .collect();
        drop(first);
        for n in 4..=5 {
            publish(&bus, n);
        }
        let again = bus.subscribe(everything(), Resume::AfterId(seen[2]));
        assert!(!again.gap);
        let ids: Vec<u64> = again.missed.iter().map(|e| e.id).collect();
        assert_eq!(ids, [seen[2] + 1, seen[2] + 2]);
    }

    #[test]
    fn a_reconnect_from_before_the_ring_is_told_of_the_gap() {
        let bus = bus(3, 10);
        let _watching = bus.subscribe(everything(), Resume::Now);
        for n in 1..=6 {
            publish(&bus, n);
        }
        let late = bus.subscribe(everything(), Resume::AfterId(1));
        assert!(late.gap);
        assert_eq!(late.missed.len(), 3);
        // An id of an earlier process is older than anything kept; a client's garbage too.
        let restarted = bus.subscribe(everything(), Resume::AfterId(99));
        assert!(restarted.gap);
        let garbage = bus.subscribe(everything(), Resume::AfterId(u64::MAX));
        assert!(garbage.gap);
    }

    #[test]
    fn a_full_queue_drops_its_subscriber_and_nobody_waits() {
        let bus = bus(10, 2);
        let mut slow = bus.subscribe(everything(), Resume::Now);
        for n in 1..=5 {
            publish(&bus, n);
        }
        assert_eq!(bus.subscribers(), 0);
        let data = |e: Arc<BusEvent>| e.data.clone();
        assert_eq!(slow.live.try_recv().map(data).ok().as_deref(), Some("1"));
        assert_eq!(slow.live.try_recv().map(data).ok().as_deref(), Some("2"));
        assert!(
            slow.live.try_recv().is_err(),
            "the stream ends after what it was given"
        );
    }

    #[test]
    fn a_chat_subscriber_gets_its_chat_only() {
        let bus = bus(10, 10);
        let mut chat = bus.subscribe(
            Interest {
                topics: Topics::of([Topic::Chats]),
                chat: Some("c".into()),
            },
            Resume::Now,
        );
        bus.publish(
            Topic::Chats,
            "message.created",
            Some(("other", 1)),
            String::new,
        );
        bus.publish(Topic::Audit, "audit.appended", None, String::new);
        publish(&bus, 7);
        assert_eq!(
            chat.live
                .try_recv()
                .ok()
                .and_then(|e| e.chat.clone())
                .map(|c| c.1),
            Some(7)
        );
        assert!(chat.live.try_recv().is_err());
    }
}
