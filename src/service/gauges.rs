//! Gauges read when `/metrics` is scraped: what a scrape shows is the state of that moment, with
//! no sampler running in the background to keep in step.

use crate::monitoring::{
    AUDIT_HEAD_SEQ, DB_SIZE, DISK_FREE, DISK_SIZE, SSE_SUBSCRIBERS, WRITER_QUEUE_CAPACITY,
    WRITER_QUEUE_DEPTH,
};
use crate::store::writer::Writer;

use super::Console;

impl Console {
    pub fn publish_gauges(&self) {
        metrics::gauge!(DB_SIZE).set(self.store.file_bytes() as f64);
        metrics::gauge!(WRITER_QUEUE_DEPTH).set(self.store.writer().queue_depth() as f64);
        metrics::gauge!(WRITER_QUEUE_CAPACITY).set(Writer::QUEUE_CAPACITY as f64);
        if let Some(disk) = self.disk_space() {
            metrics::gauge!(DISK_FREE).set(disk.free as f64);
            metrics::gauge!(DISK_SIZE).set(disk.total as f64);
        }
        metrics::gauge!(SSE_SUBSCRIBERS).set(self.bus.subscribers() as f64);
        if let Ok(head) = self.store.audit_head() {
            metrics::gauge!(AUDIT_HEAD_SEQ).set(head.seq as f64);
        }
    }
}
