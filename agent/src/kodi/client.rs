//! One WebSocket JSON-RPC connection to Kodi.

use std::time::Duration;

use jsonrpsee::core::ClientError;
use jsonrpsee::ws_client::{RpcService, RpcServiceBuilder, WsClient, WsClientBuilder};
use kodi_tickets_protocol::same_profile;

use super::rpc::{
    AddonsClient, ApplicationClient, GuiClient, JsonRpcClient, Password, ProfileDetail,
    ProfilesClient, SettingsClient,
};
use super::{KodiError, SessionState};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Every call the agent makes is answered at once by Kodi; a slow answer means Kodi hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const GET_PROFILES: &str = "Profiles.GetProfiles";
/// Kodi's `WINDOW_LOGIN_SCREEN`.
const LOGIN_SCREEN: i64 = 10029;
/// The dialogs the login screen asks for a lock code with: `WINDOW_DIALOG_NUMERIC` (the PIN
/// pad of a numeric lock) and `WINDOW_DIALOG_GAMEPAD`.
const LOCK_CODE_DIALOGS: [i64; 2] = [10109, 10110];

/// One WebSocket JSON-RPC connection to Kodi (`ws://{addr}/jsonrpc`).
///
/// Kodi drops every client on each profile switch: a `Kodi` is then dead for good
/// ([`Kodi::closed`] resolves); connect a new one.
#[derive(Debug)]
pub struct Kodi {
    // NOTE: built without jsonrpsee's request logger (`RpcService` bare): it would write
    // `Profiles.LoadProfile`'s lock-code hash to the log at trace level.
    client: WsClient<RpcService>,
}

impl Kodi {
    /// Connects to Kodi's JSON-RPC at `addr` ("127.0.0.1:9090"), giving up after ~3 s.
    pub async fn connect(addr: &str) -> Result<Kodi, KodiError> {
        let url = format!("ws://{addr}/jsonrpc");
        let client = WsClientBuilder::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(REQUEST_TIMEOUT)
            .set_rpc_middleware(RpcServiceBuilder::new())
            .build(&url)
            .await
            .map_err(|source| KodiError::Connect { url, source })?;
        Ok(Kodi { client })
    }

    /// Who is logged in: `Profiles.GetCurrentProfile`, and `GUI.GetProperties`
    /// `currentwindow` for whether Kodi shows its login screen (window 10029).
    ///
    /// NOTE: not `XBMC.GetInfoBooleans` `System.LoggedOn`, although it tells exactly that:
    /// asked within ~20–40 ms after `Profiles.LoadProfile` answered, it freezes Kodi 20.1 for
    /// good (see [`super::rpc`]), and this is read right after every switch.
    ///
    /// NOTE: the login screen runs as the master profile, and `currentwindow` names the
    /// topmost modal dialog rather than the window under it. So nobody is logged in while
    /// the master profile is loaded and the window is the login screen or a lock-code dialog
    /// (someone at the login screen typing a PIN). Seen on 20.1 during switches: the new
    /// profile reads for ~0.1 s while the login screen still shows (a login: logged in);
    /// after a log-off the master profile reads for ~0.2 s while the old window still shows
    /// (reads as the master logged in). Any other dialog over the master profile (the login
    /// screen's power menu, its wrong-PIN message) reads as the master logged in until it is
    /// closed; a lock-code dialog in a master session (rare) reads as nobody logged in.
    pub async fn session(&self) -> Result<SessionState, KodiError> {
        const GET_PROFILE: &str = "Profiles.GetCurrentProfile";
        const GET_GUI: &str = "GUI.GetProperties";
        let (profile, gui) = tokio::join!(
            self.client.get_current_profile(),
            self.client.get_gui_properties(&["currentwindow"]),
        );
        let profile = profile.map_err(rpc_error(GET_PROFILE))?.label;
        let window = gui.map_err(rpc_error(GET_GUI))?.currentwindow.id;
        let login_screen_window = window == LOGIN_SCREEN || LOCK_CODE_DIALOGS.contains(&window);
        let at_login_screen = login_screen_window && self.is_master(&profile).await?;
        Ok(SessionState {
            logged_on: !at_login_screen,
            profile,
        })
    }

    /// Whether `profile` is the master profile.
    pub async fn is_master(&self, profile: &str) -> Result<bool, KodiError> {
        Ok(same_profile(profile, &self.master_profile().await?.label))
    }

    /// Kodi's version as "20.1" (stable) or "21.0-beta2" (pre-release).
    pub async fn version(&self) -> Result<String, KodiError> {
        let properties = self
            .client
            .get_properties(&["version"])
            .await
            .map_err(rpc_error("Application.GetProperties"))?;
        Ok(properties.version.display())
    }

    /// Whether Kodi's EventServer is on (Settings › Services › Control › "Allow remote control
    /// by programs"): without it the agent cannot log a profile off.
    pub async fn eventserver_on(&self) -> Result<bool, KodiError> {
        let setting = self
            .client
            .get_setting_value("services.esenabled")
            .await
            .map_err(rpc_error("Settings.GetSettingValue"))?;
        setting.value.as_bool().ok_or_else(|| KodiError::BadAnswer {
            method: "Settings.GetSettingValue",
            detail: format!("services.esenabled is {}", setting.value),
        })
    }

    /// Whether the add-on `id` is installed and enabled in the loaded profile.
    pub async fn addon_enabled(&self, id: &str) -> Result<bool, KodiError> {
        const GET_ADDON: &str = "Addons.GetAddonDetails";
        match self.client.get_addon_details(id, &["enabled"]).await {
            Ok(details) => Ok(details.addon.enabled),
            Err(error) => match rpc_error(GET_ADDON)(error) {
                // Kodi's answer for an add-on it does not have.
                KodiError::Rpc { code: -32602, .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Whether the master profile has a lock. Without one Kodi enforces no profile lock at
    /// all: the login screen opens every profile without asking for its code.
    pub async fn master_lock_on(&self) -> Result<bool, KodiError> {
        let master = self.master_profile().await?;
        let lockmode = master.lockmode.ok_or_else(|| KodiError::BadAnswer {
            method: GET_PROFILES,
            detail: format!("no lockmode for profile {:?}", master.label),
        })?;
        Ok(lockmode != 0)
    }

    /// The master profile, with its lockmode (the master lock).
    ///
    /// Kodi lists profiles in profiles.xml order, the master profile first, and reports the
    /// master lock as the first entry's `lockmode`.
    async fn master_profile(&self) -> Result<ProfileDetail, KodiError> {
        let list = self
            .client
            .get_profiles(&["lockmode"])
            .await
            .map_err(rpc_error(GET_PROFILES))?;
        list.profiles
            .into_iter()
            .next()
            .ok_or(KodiError::BadAnswer {
                method: GET_PROFILES,
                detail: "no profiles listed".into(),
            })
    }

    /// Whether ending the logged-in session ([`log_off`](super::log_off)) is safe now.
    ///
    /// Refuses ([`KodiError::LogOffRefused`]) at the login screen and while the master
    /// profile is logged on: in both cases `System.LogOff` leaves Kodi's JSON-RPC down until
    /// someone logs in at the TV (seen on 20.1: Kodi only restarts its network services when
    /// logging off loads the master profile, which is already loaded then).
    pub async fn check_log_off(&self) -> Result<(), KodiError> {
        let session = self.session().await?;
        if !session.logged_on {
            return Err(KodiError::LogOffRefused {
                reason: "nobody is logged in",
            });
        }
        let master = self.master_profile().await?;
        if same_profile(&session.profile, &master.label) {
            return Err(KodiError::LogOffRefused {
                reason: "the master profile is logged in",
            });
        }
        Ok(())
    }

    /// Shows a toast on the TV for `display_ms` milliseconds.
    pub async fn notify(
        &self,
        title: &str,
        message: &str,
        display_ms: u32,
    ) -> Result<(), KodiError> {
        const METHOD: &str = "GUI.ShowNotification";
        let answer = self
            .client
            .show_notification(title, message, display_ms)
            .await
            .map_err(rpc_error(METHOD))?;
        expect_ok(METHOD, &answer)
    }

    /// Logs `profile` in with the MD5 of its lock code (hex, as in profiles.xml; Kodi ignores
    /// the case).
    ///
    /// Refuses, without asking Kodi to load anything, when `profile` is already loaded and
    /// logged on: loading it again stops Kodi's network services for good. Kodi answers
    /// before the switch happens; the switch then drops this connection.
    pub async fn load_profile_md5(&self, profile: &str, md5_hex: &str) -> Result<(), KodiError> {
        const METHOD: &str = "Profiles.LoadProfile";
        let current = self.session().await?;
        if current.logged_on && same_profile(&current.profile, profile) {
            return Err(KodiError::AlreadyLoaded {
                profile: profile.to_owned(),
            });
        }
        let password = Password {
            value: md5_hex,
            encryption: "md5",
        };
        let answer = self
            .client
            .load_profile(profile, password)
            .await
            .map_err(rpc_error(METHOD))?;
        expect_ok(METHOD, &answer)
    }

    /// Broadcasts `Other.<message>` to every JSON-RPC client and add-on.
    pub async fn notify_all(
        &self,
        sender: &str,
        message: &str,
        data: serde_json::Value,
    ) -> Result<(), KodiError> {
        const METHOD: &str = "JSONRPC.NotifyAll";
        let answer = self
            .client
            .notify_all(sender, message, &data)
            .await
            .map_err(rpc_error(METHOD))?;
        expect_ok(METHOD, &answer)
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Resolves when the connection drops (at once if it already has).
    pub async fn closed(&self) {
        self.client.on_disconnect().await;
    }
}

fn rpc_error(method: &'static str) -> impl FnOnce(ClientError) -> KodiError {
    move |error| match error {
        ClientError::Call(call) => KodiError::Rpc {
            method,
            code: call.code(),
            message: call.message().to_owned(),
        },
        ClientError::ParseError(e) => KodiError::BadAnswer {
            method,
            detail: e.to_string(),
        },
        source => KodiError::Transport { method, source },
    }
}

fn expect_ok(method: &'static str, answer: &str) -> Result<(), KodiError> {
    if answer == "OK" {
        Ok(())
    } else {
        Err(KodiError::BadAnswer {
            method,
            detail: format!("{answer:?} instead of \"OK\""),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::kodi::fake::{self, FakeKodi};

    fn state(logged_on: bool, profile: &str) -> SessionState {
        SessionState {
            logged_on,
            profile: profile.into(),
        }
    }

    #[tokio::test]
    async fn session_reads_the_profile_and_the_window() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert_eq!(kodi.session().await.unwrap(), state(false, "Master user"));
        fake.log_in("Kids");
        assert_eq!(kodi.session().await.unwrap(), state(true, "Kids"));
        fake.log_in("Master user");
        assert_eq!(kodi.session().await.unwrap(), state(true, "Master user"));
        let calls = fake.calls();
        assert!(calls.contains(&(
            "GUI.GetProperties".into(),
            json!({"properties": ["currentwindow"]})
        )));
        assert!(calls.contains(&("Profiles.GetCurrentProfile".into(), Value::Null)));
    }

    #[tokio::test]
    async fn session_never_asks_kodis_main_thread() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        for window in [fake::LOGIN_SCREEN, fake::NUMERIC_INPUT, fake::HOME] {
            fake.set(|s| s.window = window);
            kodi.session().await.unwrap();
        }
        let calls = fake.calls();
        assert!(
            calls.iter().all(|(m, _)| !m.starts_with("XBMC.")),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_lock_code_dialog_over_the_login_screen_is_nobody_logged_in() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        for dialog in [fake::NUMERIC_INPUT, fake::GAMEPAD_INPUT] {
            fake.set(|s| s.window = dialog);
            assert_eq!(kodi.session().await.unwrap(), state(false, "Master user"));
        }
        // Told apart from a master session by the master profile's name, as Kodi lists it.
        assert!(fake.calls().contains(&(
            "Profiles.GetProfiles".into(),
            json!({"properties": ["lockmode"]})
        )));
    }

    #[tokio::test]
    async fn a_profile_loaded_while_the_login_screen_still_shows_is_logged_in() {
        let fake = FakeKodi::start().await;
        fake.set(|s| s.profile = "Kids".into());
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert_eq!(kodi.session().await.unwrap(), state(true, "Kids"));
    }

    #[tokio::test]
    async fn a_lock_code_dialog_in_a_profile_session_is_still_that_session() {
        let fake = FakeKodi::start().await;
        fake.log_in("Kids");
        fake.set(|s| s.window = fake::NUMERIC_INPUT);
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert_eq!(kodi.session().await.unwrap(), state(true, "Kids"));
    }

    #[tokio::test]
    async fn other_dialogs_over_the_master_profile_count_as_logged_in() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        for dialog in [fake::OK_DIALOG, fake::SHUTDOWN_MENU] {
            fake.set(|s| s.window = dialog);
            assert_eq!(kodi.session().await.unwrap(), state(true, "Master user"));
        }
    }

    #[tokio::test]
    async fn session_without_the_current_window_is_a_bad_answer() {
        let fake = FakeKodi::start().await;
        fake.set(|s| s.omit_current_window = true);
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        let err = kodi.session().await.unwrap_err();
        assert!(
            matches!(
                err,
                KodiError::BadAnswer {
                    method: "GUI.GetProperties",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn version_is_major_minor_plus_pre_release_tag() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert_eq!(kodi.version().await.unwrap(), "20.1");
        fake.set(|s| {
            s.version =
                json!({"major": 21, "minor": 0, "revision": "x", "tag": "beta", "tagversion": "2"})
        });
        assert_eq!(kodi.version().await.unwrap(), "21.0-beta2");
        fake.set(|s| s.version = json!({"major": 21, "minor": 2}));
        assert_eq!(kodi.version().await.unwrap(), "21.2");
        assert!(fake.calls().contains(&(
            "Application.GetProperties".into(),
            json!({"properties": ["version"]})
        )));
    }

    #[tokio::test]
    async fn master_lock_is_the_first_profiles_lockmode() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert!(kodi.master_lock_on().await.unwrap());
        fake.set(|s| s.master_lockmode = 0);
        assert!(!kodi.master_lock_on().await.unwrap());
        assert!(fake.calls().contains(&(
            "Profiles.GetProfiles".into(),
            json!({"properties": ["lockmode"]})
        )));
    }

    #[tokio::test]
    async fn load_profile_sends_md5_and_never_prompts() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        let md5 = "81dc9bdb52d04dc20036dbd8313ed055";
        kodi.load_profile_md5("Kids", md5).await.unwrap();
        let load = fake
            .calls()
            .into_iter()
            .find(|(m, _)| m == "Profiles.LoadProfile")
            .unwrap();
        assert_eq!(
            load.1,
            json!({"profile": "Kids", "password": {"value": md5, "encryption": "md5"}})
        );
    }

    #[tokio::test]
    async fn load_profile_passes_on_kodis_refusal() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        let err = kodi
            .load_profile_md5("Kids", "00000000000000000000000000000000")
            .await
            .unwrap_err();
        assert!(
            matches!(err, KodiError::Rpc { code: -32602, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn load_profile_refuses_the_logged_on_profile_without_calling_kodi() {
        let fake = FakeKodi::start().await;
        fake.log_in("Kids");
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        let err = kodi
            .load_profile_md5("kids", "81dc9bdb52d04dc20036dbd8313ed055")
            .await
            .unwrap_err();
        assert!(matches!(err, KodiError::AlreadyLoaded { .. }), "{err:?}");
        assert!(fake
            .calls()
            .iter()
            .all(|(m, _)| m != "Profiles.LoadProfile"));
    }

    #[tokio::test]
    async fn load_profile_from_the_login_screen_may_load_the_master() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        kodi.load_profile_md5("Master user", crate::kodi::fake::MASTER_MD5)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn addon_enabled_reads_the_loaded_profiles_addon_details() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert!(
            !kodi.addon_enabled("service.kodi-tickets").await.unwrap(),
            "not installed"
        );
        fake.set(|s| s.addon_enabled = Some(false));
        assert!(
            !kodi.addon_enabled("service.kodi-tickets").await.unwrap(),
            "disabled"
        );
        fake.set(|s| s.addon_enabled = Some(true));
        assert!(kodi.addon_enabled("service.kodi-tickets").await.unwrap());
        assert!(fake.calls().contains(&(
            "Addons.GetAddonDetails".into(),
            json!({"addonid": "service.kodi-tickets", "properties": ["enabled"]})
        )));
    }

    #[tokio::test]
    async fn notify_and_notify_all_send_kodis_parameter_names() {
        let fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        kodi.notify("Tickets", "Hello", 4000).await.unwrap();
        kodi.notify_all("kodi-tickets", "ticket", json!({"left": 3}))
            .await
            .unwrap();
        let calls = fake.calls();
        assert!(calls.contains(&(
            "GUI.ShowNotification".into(),
            json!({"title": "Tickets", "message": "Hello", "displaytime": 4000})
        )));
        assert!(calls.contains(&(
            "JSONRPC.NotifyAll".into(),
            json!({"sender": "kodi-tickets", "message": "ticket", "data": {"left": 3}})
        )));
    }

    async fn check_log_off(fake: &FakeKodi) -> Result<(), KodiError> {
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        kodi.check_log_off().await
    }

    #[tokio::test]
    async fn a_profile_may_be_logged_off() {
        let fake = FakeKodi::start().await;
        fake.log_in("Kids");
        check_log_off(&fake).await.unwrap();
    }

    #[tokio::test]
    async fn no_log_off_at_the_login_screen() {
        let fake = FakeKodi::start().await;
        let result = check_log_off(&fake).await;
        assert!(
            matches!(result, Err(KodiError::LogOffRefused { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn no_log_off_while_the_master_is_logged_in() {
        let fake = FakeKodi::start().await;
        fake.log_in("Master user");
        let result = check_log_off(&fake).await;
        assert!(
            matches!(result, Err(KodiError::LogOffRefused { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn closed_resolves_when_kodi_goes_away() {
        let mut fake = FakeKodi::start().await;
        let kodi = Kodi::connect(&fake.addr()).await.unwrap();
        assert!(kodi.is_connected());
        fake.stop().await;
        tokio::time::timeout(Duration::from_secs(5), kodi.closed())
            .await
            .expect("closed() resolves");
        assert!(!kodi.is_connected());
    }

    #[tokio::test]
    async fn connect_to_nothing_fails_fast() {
        let port = crate::kodi::fake::free_port();
        let err = Kodi::connect(&format!("127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(err, KodiError::Connect { .. }), "{err:?}");
    }
}
