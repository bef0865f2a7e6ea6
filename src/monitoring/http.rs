//! `http_requests_total{method,route,status}` and `http_request_duration_seconds{route}`, recorded
//! once per request without a lookup in the shared registry.
//!
//! Each thread keeps the handles it has used, by route template, method and status: after its
//! first request of a kind a thread records with two atomic operations. The label values are
//! bounded — route templates, a fixed set of methods, the statuses the service answers — so the
//! per-thread maps stay small.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::{HTTP_DURATION, HTTP_REQUESTS};

/// One route's series.
struct RouteSeries {
    duration: Histogram,
    requests: HashMap<(&'static str, u16), Counter>,
}

thread_local! {
    static ROUTES: RefCell<HashMap<String, RouteSeries>> = RefCell::new(HashMap::new());
}

/// Records one served request. `method` is one of a fixed set of labels, `route` a route
/// template (or a fixed word for requests that matched none).
pub fn record(method: &'static str, route: &str, status: u16, latency: Duration) {
    ROUTES.with_borrow_mut(|routes| {
        if let Some(series) = routes.get_mut(route) {
            series.record(method, route, status, latency);
            return;
        }
        let mut series = RouteSeries {
            duration: metrics::histogram!(HTTP_DURATION, "route" => route.to_owned()),
            requests: HashMap::new(),
        };
        series.record(method, route, status, latency);
        routes.insert(route.to_owned(), series);
    });
}

impl RouteSeries {
    fn record(&mut self, method: &'static str, route: &str, status: u16, latency: Duration) {
        self.duration.record(latency.as_secs_f64());
        self.requests
            .entry((method, status))
            .or_insert_with(|| {
                metrics::counter!(
                    HTTP_REQUESTS,
                    "method" => method,
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                )
            })
            .increment(1);
    }
}
