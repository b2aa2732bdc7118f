//! The Kodi Tickets agent as a library: the binary's parts, and what its tests drive.

pub mod apply;
pub mod check;
pub mod config;
pub mod core;
pub mod discover;
pub mod driver;
pub mod kodi;
pub mod pairing;
pub mod profiles_xml;
pub mod server;
pub mod state;
