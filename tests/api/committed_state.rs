//! What a committed change does to the state the service keeps in memory holds whether or not
//! the request that made it is still there to see it (SPEC §3).

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{eventually, spawn_app_with};

/// Sends `DELETE /api/admin/keys/{id}` and hangs up without waiting for the answer: after the
/// service has started on it (a request dropped before that is never begun), before it is done.
async fn revoke_and_hang_up(addr: &str, admin_key: &str, id: &str) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "DELETE /api/admin/keys/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin_key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(stream);
}

#[tokio::test]
async fn a_revocation_whose_client_hangs_up_still_revokes() {
    // Every commit takes half a second, so each revocation is still waiting for its commit when
    // its client hangs up — on an idle machine, which reads and queues the request at once.
    let app = spawn_app_with(&[("SOFIIA_FAILPOINTS", "store.commit=sleep:500")]).await;
    let mut keys = Vec::new();
    // Each refused key counts toward the lockout of this address: stay under five.
    for _ in 0..3 {
        keys.push(app.create_api_key("operator").await);
    }
    for key in &keys {
        revoke_and_hang_up(&app.socket_addr(), &app.admin_key, &key.id).await;
    }

    for key in &keys {
        eventually("the revocation is recorded", async || {
            let audit = app
                .get_with_query(
                    "api/audit",
                    &app.admin_key,
                    &[
                        ("action", "key.revoke"),
                        ("target", &format!("key:{}", key.id)),
                    ],
                )
                .await;
            let body: serde_json::Value = audit.json().await.ok()?;
            (!body["items"].as_array()?.is_empty()).then_some(())
        })
        .await;
        let refused = app.get("api/chats", &key.secret).await;
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "a committed revocation must stop the key at once"
        );
        let listed = app.page("/api/admin/keys", &[]).await;
        let shown = listed
            .items
            .iter()
            .find(|k| k["id"] == key.id.as_str())
            .expect("the key is listed");
        assert!(shown["revoked_ms"].is_u64(), "listed as revoked: {shown}");
    }
}
