//! The slice of Kodi's JSON-RPC API (v13, Kodi 20) the agent uses, as typed jsonrpsee
//! clients, and the answer shapes Kodi 20.1 was seen to send.
//!
//! NOTE: Kodi validates parameters against its schema by name, so every method here
//! passes them as an object (`param_kind = map`).
//!
//! NOTE: no `XBMC.GetInfoBooleans` or `XBMC.GetInfoLabels` on purpose. Kodi answers them
//! on its main thread; one that arrives ~20–40 ms after `Profiles.LoadProfile` answered
//! "OK" freezes Kodi 20.1 for good (the main thread, loading the profile, waits for the
//! JSON-RPC thread, which waits for the main thread). Polled every few ms through a dozen
//! profile switches and log-offs, `Profiles.GetCurrentProfile` and `GUI.GetProperties`
//! never froze it; the same poll of `XBMC.GetInfoBooleans` froze it at the first switch.

use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};

#[rpc(client, namespace = "Profiles", namespace_separator = ".")]
pub trait Profiles {
    /// `{"label":"Master user"}`
    #[method(name = "GetCurrentProfile")]
    async fn get_current_profile(&self) -> RpcResult<CurrentProfile>;

    /// `{"limits":{..},"profiles":[{"label":"Master user","lockmode":1},..]}`
    #[method(name = "GetProfiles", param_kind = map)]
    async fn get_profiles(&self, properties: &[&str]) -> RpcResult<ProfileList>;

    /// `"OK"`; the profile loads about a second later. Wrong password or unknown profile:
    /// error -32602 "Invalid params.".
    // NOTE: no `prompt` parameter on purpose: `"prompt":true` opens a PIN dialog on the
    // TV and blocks Kodi's JSON-RPC server until someone answers it. Kodi defaults to false.
    #[method(name = "LoadProfile", param_kind = map)]
    async fn load_profile(&self, profile: &str, password: Password<'_>) -> RpcResult<String>;
}

#[rpc(client, namespace = "Addons", namespace_separator = ".")]
pub trait Addons {
    /// `{"addon":{"addonid":"skin.estuary","enabled":true,"type":"xbmc.gui.skin"}}`, as the
    /// loaded profile has it. An add-on Kodi does not have: error -32602 "Invalid params.".
    #[method(name = "GetAddonDetails", param_kind = map)]
    async fn get_addon_details(
        &self,
        addonid: &str,
        properties: &[&str],
    ) -> RpcResult<AddonDetails>;
}

#[derive(Debug, Deserialize)]
pub struct AddonDetails {
    pub addon: AddonEnabled,
}

#[derive(Debug, Deserialize)]
pub struct AddonEnabled {
    pub enabled: bool,
}

#[rpc(client, namespace = "Application", namespace_separator = ".")]
pub trait Application {
    /// `{"version":{"major":20,"minor":1,"revision":"20230312-nogitfound","tag":"stable"}}`
    #[method(name = "GetProperties", param_kind = map)]
    async fn get_properties(&self, properties: &[&str]) -> RpcResult<ApplicationProperties>;
}

#[rpc(client, namespace = "Settings", namespace_separator = ".")]
pub trait Settings {
    /// `{"value":true}`
    #[method(name = "GetSettingValue", param_kind = map)]
    async fn get_setting_value(&self, setting: &str) -> RpcResult<SettingValue>;
}

#[derive(Debug, Clone, Deserialize)]
pub struct SettingValue {
    pub value: serde_json::Value,
}

#[rpc(client, namespace = "GUI", namespace_separator = ".")]
pub trait Gui {
    /// `{"currentwindow":{"id":10029,"label":"Login screen"}}`. `id` is the topmost modal
    /// dialog while one is open (`{"id":10109,"label":"Numeric Input"}` for a PIN pad),
    /// else the active window.
    #[method(name = "GetProperties", param_kind = map)]
    async fn get_gui_properties(&self, properties: &[&str]) -> RpcResult<GuiProperties>;

    /// `"OK"`
    #[method(name = "ShowNotification", param_kind = map)]
    async fn show_notification(
        &self,
        title: &str,
        message: &str,
        displaytime: u32,
    ) -> RpcResult<String>;
}

#[rpc(client, namespace = "JSONRPC", namespace_separator = ".")]
pub trait JsonRpc {
    /// `"OK"`; every client and add-on then sees `Other.<message>`.
    #[method(name = "NotifyAll", param_kind = map)]
    async fn notify_all(
        &self,
        sender: &str,
        message: &str,
        data: &serde_json::Value,
    ) -> RpcResult<String>;
}

/// `Profiles.LoadProfile`'s `password` object. No `Debug`: `value` is a lock-code hash.
#[derive(Serialize)]
pub struct Password<'a> {
    pub value: &'a str,
    /// `"md5"`: `value` is compared, case-insensitively, with the `<lockcode>` hash.
    pub encryption: &'static str,
}

#[derive(Debug, Deserialize)]
pub struct CurrentProfile {
    pub label: String,
}

#[derive(Debug, Deserialize)]
pub struct ProfileList {
    #[serde(default)]
    pub profiles: Vec<ProfileDetail>,
}

#[derive(Debug, Deserialize)]
pub struct ProfileDetail {
    pub label: String,
    /// 0 everyone, 1 numeric, 2 gamepad, 3 qwerty; only present when asked for.
    pub lockmode: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct GuiProperties {
    pub currentwindow: CurrentWindow,
}

#[derive(Debug, Deserialize)]
pub struct CurrentWindow {
    /// Kodi's window id (`WINDOW_*` in `xbmc/guilib/WindowIDs.h`).
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct ApplicationProperties {
    pub version: Version,
}

#[derive(Debug, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    /// "stable", "alpha", "beta", "releasecandidate", ...
    #[serde(default)]
    pub tag: Option<String>,
    /// The number after a pre-release tag ("2" in 21.0 beta 2); absent for stable.
    #[serde(default)]
    pub tagversion: Option<String>,
}

impl Version {
    /// "20.1" for a stable release, "21.0-beta2" for a pre-release.
    pub fn display(&self) -> String {
        let base = format!("{}.{}", self.major, self.minor);
        match self.tag.as_deref().map(str::trim) {
            None | Some("") | Some("stable") => base,
            Some(tag) => format!(
                "{base}-{tag}{}",
                self.tagversion.as_deref().unwrap_or_default().trim()
            ),
        }
    }
}
