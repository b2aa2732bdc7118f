//! Hears the add-on's requests on Kodi's bus (`JSONRPC.NotifyAll` reaches every JSON-RPC
//! client as a notification named `Other.<message>`), and Kodi's PIN pads closing: a PIN
//! typed at the login screen is a login about to begin.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::ws_client::{RpcServiceBuilder, WsClientBuilder};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use kodi_tickets_protocol::bus::FromAddon;

use super::bus;

/// After a drop, Kodi is tried again this often for [`RETRY_FAST_FOR`] (a switch or a
/// restart by the script is over well within it), then every [`RETRY_SLOW`]. A PIN pad that
/// opens before the listener is back goes unheard.
const RETRY_FAST: Duration = Duration::from_millis(100);
const RETRY_FAST_FOR: Duration = Duration::from_secs(30);
const RETRY_SLOW: Duration = Duration::from_secs(1);

/// Kodi's notifications as an input dialog opens (with its `type`) and closes.
const INPUT_REQUESTED: &str = "Input.OnInputRequested";
const INPUT_FINISHED: &str = "Input.OnInputFinished";
/// The `type` of a masked numeric dialog: the login screen's PIN pad (and the add-on's).
const PIN_PAD: &str = "numericpassword";

/// What [`listen`] hears.
pub struct Heard {
    /// The add-on's requests.
    pub addon: mpsc::Receiver<FromAddon>,
    /// One message per PIN pad closed (a PIN typed, or the pad cancelled); several closed
    /// before one is taken are one.
    pub pin_typed: mpsc::Receiver<()>,
}

/// Listens on its own connection, reconnecting after every drop (Kodi drops all clients on
/// each profile switch); runs until the add-on's receiver is dropped.
pub fn listen(addr: String) -> Heard {
    let (addon_tx, addon) = mpsc::channel(16);
    let (pin_tx, pin_typed) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut away_since = Instant::now();
        while !addon_tx.is_closed() {
            if listen_once(&addr, &addon_tx, &pin_tx).await {
                away_since = Instant::now();
            }
            let retry = if away_since.elapsed() < RETRY_FAST_FOR {
                RETRY_FAST
            } else {
                RETRY_SLOW
            };
            tokio::time::sleep(retry).await;
        }
    });
    Heard { addon, pin_typed }
}

/// One connection's worth of listening; whether it was connected at all.
async fn listen_once(
    addr: &str,
    addon: &mpsc::Sender<FromAddon>,
    pin_typed: &mpsc::Sender<()>,
) -> bool {
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
    for method in bus::LISTENS_TO
        .into_iter()
        .chain([INPUT_REQUESTED, INPUT_FINISHED])
    {
        let Ok(subscription) = client.subscribe_to_method::<Value>(method).await else {
            return true;
        };
        streams.push(subscription.map(move |params| (method, params)).boxed());
    }
    let mut heard = stream::select_all(streams);
    let mut pin_pad_open = false;
    while let Some((method, params)) = heard.next().await {
        let Ok(params) = params else { continue };
        match method {
            INPUT_REQUESTED => pin_pad_open = params["data"]["type"] == PIN_PAD,
            INPUT_FINISHED => {
                if std::mem::take(&mut pin_pad_open) {
                    // Full: one is already waiting, which says the same.
                    let _ = pin_typed.try_send(());
                }
            }
            _ => {
                if let Some(request) = bus::parse(method, &params) {
                    if addon.send(request).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    true
}
