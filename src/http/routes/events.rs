//! `GET /api/chats/{id}/events`: `message.created` for one chat, as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tokio_stream::{Stream, StreamExt};

use crate::domain::role::Permission;
use crate::http::auth::{Caller, session_cookie};
use crate::http::error::ApiError;
use crate::http::extract::Path;
use crate::monitoring::series;
use crate::service::Console;
use crate::service::events::ChatEvent;

const HEARTBEAT: Duration = Duration::from_secs(15);

/// What drives a stream: the next event, or the service stopping.
enum Next {
    Event(Result<ChatEvent, BroadcastStreamRecvError>),
    Closing,
}

/// The stream ends when the subscriber lags (it reconnects rather than slowing a send), when the
/// service stops, and before the first event its credential no longer authorizes.
pub async fn stream(
    State(console): State<Arc<Console>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let principal = caller.may(Permission::ReadChats)?.clone();
    console.chat(&id)?;
    let chat: Arc<str> = id.into();
    let token = session_cookie(&headers).map(str::to_owned);
    let events = BroadcastStream::new(console.events.subscribe()).map(Next::Event);
    let closing = WatchStream::new(console.events.closing())
        .filter(|closing| *closing)
        .map(|_| Next::Closing);
    let stream = events
        .merge(closing)
        .take_while(move |next| match next {
            Next::Event(Ok(_)) => console.still_authorized(&principal, token.as_deref()),
            Next::Event(Err(_)) => {
                series::sse_dropped();
                false
            }
            Next::Closing => false,
        })
        .filter_map(move |next| {
            let Next::Event(Ok(event)) = next else {
                return None;
            };
            (event.chat_id == chat).then(|| {
                Ok(Event::default()
                    .event("message.created")
                    .id(event.seq.to_string())
                    .data(&*event.json))
            })
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}
