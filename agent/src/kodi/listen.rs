//! Hears the add-on's requests on Kodi's bus: `JSONRPC.NotifyAll` reaches every JSON-RPC
//! client as a notification named `Other.<message>`.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::ws_client::{RpcServiceBuilder, WsClientBuilder};
use serde_json::Value;
use tokio::sync::mpsc;

use kodi_tickets_protocol::bus::FromAddon;

use super::bus;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens on its own connection, reconnecting with backoff after every drop (Kodi drops
/// all clients on each profile switch); runs until the receiver is dropped.
pub fn listen(addr: String) -> mpsc::Receiver<FromAddon> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        while !tx.is_closed() {
            if listen_once(&addr, &tx).await {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    rx
}

/// One connection's worth of listening; whether it was connected at all.
async fn listen_once(addr: &str, tx: &mpsc::Sender<FromAddon>) -> bool {
    let Ok(client) = WsClientBuilder::new()
        .connection_timeout(Duration::from_secs(3))
        // NOTE: no request logger: nothing secret is sent here, but keep logs quiet.
        .set_rpc_middleware(RpcServiceBuilder::new())
        .build(format!("ws://{addr}/jsonrpc"))
        .await
    else {
        return false;
    };
    let mut streams = Vec::new();
    for method in bus::LISTENS_TO {
        let Ok(subscription) = client.subscribe_to_method::<Value>(method).await else {
            return true;
        };
        streams.push(subscription.map(move |params| (method, params)).boxed());
    }
    let mut heard = stream::select_all(streams);
    while let Some((method, params)) = heard.next().await {
        let Ok(params) = params else { continue };
        if let Some(request) = bus::parse(method, &params) {
            if tx.send(request).await.is_err() {
                break;
            }
        }
    }
    true
}
