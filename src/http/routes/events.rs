//! `GET /api/chats/{id}/events`: `message.created` for one chat, as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Path;
use crate::service::Console;

const HEARTBEAT: Duration = Duration::from_secs(15);

pub async fn stream(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.may(Permission::ReadChats)?;
    console.chat(&id).await?;
    let chat: Arc<str> = id.into();
    // A subscriber that lags behind is dropped: its stream ends (and the client reconnects)
    // rather than ever slowing a send.
    let events = BroadcastStream::new(console.events.subscribe())
        .take_while(Result::is_ok)
        .filter_map(move |event| {
            let event = event.ok().filter(|e| e.chat_id == chat)?;
            Some(Ok(Event::default()
                .event("message.created")
                .id(event.seq.to_string())
                .data(&*event.json)))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}
