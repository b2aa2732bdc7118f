//! A stand-in for Kodi's WebSocket JSON-RPC in tests, answering in the shapes Kodi 20.1
//! answers (seen on the real one).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};

/// MD5 of "2580", the master lock code.
pub const MASTER_MD5: &str = "17b3c7061788dbe82de5abe9f6fe22b3";
/// MD5 of "1234", the Kids lock code.
pub const KIDS_MD5: &str = "81dc9bdb52d04dc20036dbd8313ed055";

/// Window ids and labels `GUI.GetProperties` `currentwindow` gave on Kodi 20.1.
pub const LOGIN_SCREEN: i64 = 10029;
pub const HOME: i64 = 10000;
/// The PIN pad of a numeric lock (a dialog: reported instead of the window under it).
pub const NUMERIC_INPUT: i64 = 10109;
pub const GAMEPAD_INPUT: i64 = 10110;
pub const OK_DIALOG: i64 = 12002;
pub const SHUTDOWN_MENU: i64 = 10111;
/// The method the watcher reads the session with on every poll.
pub const GET_CURRENT_PROFILE: &str = "Profiles.GetCurrentProfile";
const WINDOW_LABELS: [(i64, &str); 6] = [
    (LOGIN_SCREEN, "Login screen"),
    (HOME, "Home"),
    (NUMERIC_INPUT, "Numeric Input"),
    (GAMEPAD_INPUT, "Gamepad input"),
    (OK_DIALOG, "OK dialog"),
    (SHUTDOWN_MENU, "Shutdown menu"),
];

pub struct FakeState {
    pub profile: String,
    /// What `GUI.GetProperties` reports as `currentwindow`: a window or the topmost dialog.
    pub window: i64,
    /// Answer `GUI.GetProperties` without `currentwindow`.
    pub omit_current_window: bool,
    pub master_lockmode: i64,
    pub version: Value,
    /// The add-on `service.kodi-tickets`: `None` not installed, else whether it is enabled.
    pub addon_enabled: Option<bool>,
    /// Every call received: method and params (`null` when none were sent).
    pub calls: Vec<(String, Value)>,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            profile: "Master user".into(),
            window: LOGIN_SCREEN,
            omit_current_window: false,
            master_lockmode: 1,
            addon_enabled: None,
            version: json!({"major": 20, "minor": 1, "revision": "20230312-nogitfound", "tag": "stable"}),
            calls: Vec::new(),
        }
    }
}

type Shared = Arc<Mutex<FakeState>>;

pub struct FakeKodi {
    state: Shared,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

impl FakeKodi {
    pub async fn start() -> FakeKodi {
        FakeKodi::start_on(0).await
    }

    /// Listens on `port` of 127.0.0.1 (0: any free one).
    pub async fn start_on(port: u16) -> FakeKodi {
        let state = Shared::default();
        let (addr, handle) = serve(([127, 0, 0, 1], port).into(), state.clone()).await;
        FakeKodi {
            state,
            addr,
            handle: Some(handle),
        }
    }

    /// "127.0.0.1:port", as `Kodi::connect` takes it.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, change: impl FnOnce(&mut FakeState)) {
        change(&mut lock(&self.state));
    }

    /// `profile` is logged in and shows its home window.
    pub fn log_in(&self, profile: &str) {
        self.set(|s| {
            s.profile = profile.into();
            s.window = HOME;
        });
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        lock(&self.state).calls.clone()
    }

    /// Waits until `method` was called at least `n` times (at most 10 s).
    pub async fn wait_for_calls(&self, method: &str, n: usize) {
        let seen = || self.calls().iter().filter(|(m, _)| m == method).count();
        tokio::time::timeout(Duration::from_secs(10), async {
            while seen() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} called {} times, not {n}", seen()));
    }

    /// Stops listening and drops every connection, as Kodi does on a profile switch.
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().unwrap();
            handle.stopped().await;
        }
    }

    /// Listens again on the same port, keeping the state.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (_, handle) = serve(self.addr, self.state.clone()).await;
        self.handle = Some(handle);
    }
}

impl Drop for FakeKodi {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.stop();
        }
    }
}

/// A Kodi whose JSON-RPC port takes connections and drops them at once: every connect
/// fails, and each attempt is counted.
pub struct Refuser {
    addr: SocketAddr,
    attempts: tokio::sync::mpsc::UnboundedReceiver<()>,
    seen: usize,
}

impl Refuser {
    pub async fn start() -> Refuser {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, attempts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Refuser {
            addr,
            attempts,
            seen: 0,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until `n` connects in all were refused (at most 10 s).
    pub async fn wait_for_attempts(&mut self, n: usize) {
        while self.seen < n {
            tokio::time::timeout(Duration::from_secs(10), self.attempts.recv())
                .await
                .expect("another connect attempt within 10 s")
                .expect("the refuser runs");
            self.seen += 1;
        }
    }
}

/// A port nothing listens on (just released by the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lock(state: &Shared) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap()
}

fn record(state: &Shared, method: &str, params: &Params) -> Value {
    let value: Value = params
        .as_str()
        .map(|raw| serde_json::from_str(raw).unwrap())
        .unwrap_or(Value::Null);
    lock(state).calls.push((method.into(), value.clone()));
    value
}

fn invalid_params() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, "Invalid params.", None::<()>)
}

async fn serve(addr: SocketAddr, state: Shared) -> (SocketAddr, ServerHandle) {
    let server = Server::builder().build(addr).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut module = RpcModule::new(state);
    module
        .register_method("Profiles.GetCurrentProfile", |p, s, _| {
            record(s, "Profiles.GetCurrentProfile", &p);
            json!({"label": lock(s).profile})
        })
        .unwrap();
    // NOTE: no XBMC.GetInfoBooleans / XBMC.GetInfoLabels: the agent must never call them
    // (see `rpc`), so here they fail as unknown methods.
    module
        .register_method("GUI.GetProperties", |p, s, _| {
            let params = record(s, "GUI.GetProperties", &p);
            let state = lock(s);
            let mut answer = serde_json::Map::new();
            for name in params["properties"].as_array().into_iter().flatten() {
                if name == "currentwindow" && !state.omit_current_window {
                    let label = WINDOW_LABELS
                        .iter()
                        .find(|(id, _)| *id == state.window)
                        .map_or("", |(_, label)| label);
                    answer.insert(
                        "currentwindow".into(),
                        json!({"id": state.window, "label": label}),
                    );
                }
            }
            Value::Object(answer)
        })
        .unwrap();
    module
        .register_method("Profiles.GetProfiles", |p, s, _| {
            let params = record(s, "Profiles.GetProfiles", &p);
            let with_lockmode = params["properties"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("lockmode")));
            let state = lock(s);
            let mut profiles = vec![
                json!({"label": "Master user", "lockmode": state.master_lockmode}),
                json!({"label": "Kids", "lockmode": 1}),
                json!({"label": "Guest", "lockmode": 0}),
            ];
            if !with_lockmode {
                for profile in &mut profiles {
                    profile.as_object_mut().unwrap().remove("lockmode");
                }
            }
            json!({"limits": {"end": 3, "start": 0, "total": 3}, "profiles": profiles})
        })
        .unwrap();
    module
        .register_method("Application.GetProperties", |p, s, _| {
            record(s, "Application.GetProperties", &p);
            json!({"version": lock(s).version})
        })
        .unwrap();
    module
        .register_method("Addons.GetAddonDetails", |p, s, _| {
            let params = record(s, "Addons.GetAddonDetails", &p);
            match (params["addonid"].as_str(), lock(s).addon_enabled) {
                (Some(id @ "service.kodi-tickets"), Some(enabled)) => Ok(
                    json!({"addon": {"addonid": id, "enabled": enabled, "type": "xbmc.service"}}),
                ),
                _ => Err(invalid_params()),
            }
        })
        .unwrap();
    module
        .register_method("GUI.ShowNotification", |p, s, _| {
            record(s, "GUI.ShowNotification", &p);
            "OK"
        })
        .unwrap();
    module
        .register_method("JSONRPC.NotifyAll", |p, s, _| {
            record(s, "JSONRPC.NotifyAll", &p);
            "OK"
        })
        .unwrap();
    module
        .register_method("Profiles.LoadProfile", |p, s, _| {
            let params = record(s, "Profiles.LoadProfile", &p);
            let expected = match params["profile"]
                .as_str()
                .map(kodi_tickets_protocol::profile_key)
                .as_deref()
            {
                Some("master user") => MASTER_MD5,
                Some("kids") => KIDS_MD5,
                _ => return Err(invalid_params()),
            };
            let password = &params["password"];
            if password["encryption"] == "md5" && password["value"] == expected {
                Ok("OK")
            } else {
                Err(invalid_params())
            }
        })
        .unwrap();
    (addr, server.start(module))
}
