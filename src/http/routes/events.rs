//! Server-sent event streams, both riding the event bus (`service::bus`):
//! `GET /api/chats/{id}/events` (`message.created` for one chat, the message's `seq` as the event
//! id) and `GET /api/admin/events/stream?topics=…` (every topic asked for, bus ids).
//!
//! A stream starts with what its client missed since `Last-Event-ID` (when the bus still keeps
//! it; otherwise a `reset` event first tells the client to reload what it shows), then goes
//! live, with a heartbeat comment every 15 s. It ends when its queue overflowed (the bus dropped
//! it: the client reconnects from its last id), when the service stops, and before the first
//! event its credential no longer authorizes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt};

use crate::domain::principal::Principal;
use crate::domain::role::Permission;
use crate::http::auth::{Caller, session_cookie};
use crate::http::error::ApiError;
use crate::http::extract::{Path, Query};
use crate::service::Console;
use crate::service::bus::{BusEvent, Interest, Resume, Subscription, Topic, Topics};

const HEARTBEAT: Duration = Duration::from_secs(15);
const LAST_EVENT_ID: &str = "last-event-id";

/// Which id a stream gives its events: a chat's message `seq`, or the bus id.
#[derive(Clone, Copy)]
enum Ids {
    Seq,
    Bus,
}

pub async fn chat_stream(
    State(console): State<Arc<Console>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let principal = caller.may(Permission::ReadChats)?.clone();
    console.chat(&id)?;
    let after = last_event_id(&headers)?;
    let resume = after.map_or(Resume::Now, Resume::AfterSeq);
    let interest = Interest {
        topics: Topics::of([Topic::Chats]),
        chat: Some(id.as_str().into()),
    };
    let mut subscription = console.bus.subscribe(interest, resume);
    // The chat as stored once subscribed: messages after `after` that the ring does not start
    // with were not kept (or came before a restart); the client must page them.
    if let Some(after) = after {
        let stored = console.chat(&id)?.last_seq;
        let first_kept = subscription
            .missed
            .first()
            .and_then(|event| event.chat.as_ref().map(|(_, seq)| *seq));
        if stored > after && first_kept != Some(after.saturating_add(1)) {
            subscription.gap = true;
        }
    }
    let token = session_cookie(&headers).map(str::to_owned);
    Ok(stream(console, principal, token, subscription, Ids::Seq))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Comma-separated topics; all of them when absent.
    topics: Option<String>,
}

pub async fn admin_stream(
    State(console): State<Arc<Console>>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let principal = caller.may(Permission::WatchEvents)?.clone();
    let topics = match query.topics.as_deref() {
        None => Topics::ALL,
        Some(list) => parse_topics(list)?,
    };
    let resume = last_event_id(&headers)?.map_or(Resume::Now, Resume::AfterId);
    let interest = Interest { topics, chat: None };
    let subscription = console.bus.subscribe(interest, resume);
    let token = session_cookie(&headers).map(str::to_owned);
    Ok(stream(console, principal, token, subscription, Ids::Bus))
}

fn parse_topics(list: &str) -> Result<Topics, ApiError> {
    let topics: Option<Vec<Topic>> = list.split(',').map(|t| Topic::parse(t.trim())).collect();
    match topics {
        Some(topics) if !topics.is_empty() => Ok(Topics::of(topics)),
        _ => Err(ApiError::invalid_request(format!(
            "topics: a comma-separated list of {}",
            Topic::ALL.map(Topic::as_str).join(", ")
        ))),
    }
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(LAST_EVENT_ID)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or_else(|| ApiError::invalid_request("Last-Event-ID: an event id (a number)"))
        })
        .transpose()
}

/// What drives a stream: the next event, its queue's end (dropped), or the service stopping.
enum Next {
    Event(Arc<BusEvent>),
    Ended,
    Closing,
}

fn stream(
    console: Arc<Console>,
    principal: Principal,
    token: Option<String>,
    subscription: Subscription,
    ids: Ids,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let Subscription { missed, gap, live } = subscription;
    let reset = gap.then(|| Ok(Event::default().event("reset").data("{}")));
    let missed = tokio_stream::iter(missed).map(Next::Event);
    let live = ReceiverStream::new(live)
        .map(Next::Event)
        .chain(tokio_stream::once(Next::Ended));
    let closing = WatchStream::new(console.bus.closing())
        .filter(|closing| *closing)
        .map(|_| Next::Closing);
    let events = missed
        .chain(live)
        .merge(closing)
        .take_while(move |next| match next {
            Next::Event(_) => console.still_authorized(&principal, token.as_deref()),
            Next::Ended | Next::Closing => false,
        })
        .filter_map(move |next| match next {
            Next::Event(event) => Some(Ok(sse_event(&event, ids))),
            Next::Ended | Next::Closing => None,
        });
    Sse::new(tokio_stream::iter(reset).chain(events))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

fn sse_event(event: &BusEvent, ids: Ids) -> Event {
    let id = match (ids, &event.chat) {
        (Ids::Seq, Some((_, seq))) => *seq,
        _ => event.id,
    };
    Event::default()
        .event(event.name)
        .id(id.to_string())
        .data(&event.data)
}
