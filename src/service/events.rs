//! Live chat events for `GET /api/chats/{id}/events` (SSE), published after each commit.
//!
//! One broadcast channel carries every chat's `message.created` events; a subscriber filters its
//! chat. The channel is bounded: a subscriber that falls more than `CAPACITY` events behind is
//! dropped (its stream ends and the client reconnects) — it can never hold up a send. At shutdown
//! every stream is ended, so open streams do not hold the drain up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::{broadcast, watch};

use crate::domain::message::Message;

const CAPACITY: usize = 1024;

/// A committed message, rendered once for every subscriber.
#[derive(Debug, Clone)]
pub struct ChatEvent {
    pub chat_id: Arc<str>,
    /// The message's `seq`: the SSE event id.
    pub seq: u64,
    pub json: Arc<str>,
}

pub struct Events {
    sender: broadcast::Sender<ChatEvent>,
    /// Events handed to subscribers since the start.
    published: AtomicU64,
    closing: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            published: AtomicU64::new(0),
            closing: watch::channel(false).0,
        }
    }
}

impl Events {
    /// Announces a committed message. With nobody listening this costs one check.
    pub fn message_created(&self, chat_id: &str, message: &Message) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let json = serde_json::to_string(&message.view()).unwrap_or_default();
        self.published.fetch_add(1, Relaxed);
        // An error only means every subscriber left meanwhile.
        let _ = self.sender.send(ChatEvent {
            chat_id: chat_id.into(),
            seq: message.seq,
            json: json.into(),
        });
    }

    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Open streams.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChatEvent> {
        self.sender.subscribe()
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
