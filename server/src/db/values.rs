//! The typed values the tables hold: row ids, how a PIN reaches its box, and how far a
//! delivery got. Each is stored, sent as JSON and shown to templates by the same name.

use std::fmt;

use rocket::form::{self, FromFormField, ValueField};
use rocket::request::FromParam;
use rocket::UriDisplayPath;
use serde::{Deserialize, Serialize};

/// Declares a row id: an `i64` that cannot be passed where another table's id is expected.
macro_rules! row_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            sqlx::Type, Serialize, Deserialize, UriDisplayPath,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl<'a> FromParam<'a> for $name {
            type Error = std::num::ParseIntError;

            fn from_param(param: &'a str) -> Result<Self, Self::Error> {
                param.parse()
            }
        }

        #[rocket::async_trait]
        impl<'v> FromFormField<'v> for $name {
            fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
                i64::from_value(field).map(Self)
            }
        }
    )*};
}

row_id! {
    /// A row of `tickets`.
    TicketId;
    /// A row of `profiles`.
    ProfileId;
    /// A row of `devices`: a Kodi box.
    DeviceId;
    /// A row of `deliveries`: one PIN on its way to Kodi.
    DeliveryId;
    /// A row of `admins`.
    AdminId;
}

/// How a box's PINs reach its Kodi (a device's `delivery`, a delivery's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize, Deserialize)]
#[sqlx(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The server runs the Kodi script on its own machine.
    Local,
    /// The box's agent runs it, told over the event stream.
    Agent,
    /// The server runs it on the box over SSH.
    Ssh,
}

impl Delivery {
    /// The name stored and shown in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Local => "local",
            Delivery::Agent => "agent",
            Delivery::Ssh => "ssh",
        }
    }
}

impl std::str::FromStr for Delivery {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "local" => Ok(Delivery::Local),
            "agent" => Ok(Delivery::Agent),
            "ssh" => Ok(Delivery::Ssh),
            _ => Err(()),
        }
    }
}

/// How far setting a ticket's PIN on the TV got (a delivery's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize, Deserialize)]
#[sqlx(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting: for its turn, for the agent, or for Kodi to be free.
    Pending,
    /// The script is running now.
    Running,
    /// The PIN is the profile's lock code on Kodi.
    Applied,
    /// The script failed; the admin may retry.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_stored_by_their_names() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let (delivery, status, id): (String, String, i64) = sqlx::query_as("SELECT ?, ?, ?")
            .bind(Delivery::Ssh)
            .bind(DeliveryStatus::Applied)
            .bind(TicketId(7))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            (delivery.as_str(), status.as_str(), id),
            ("ssh", "applied", 7)
        );
        let back: (Delivery, DeliveryStatus, TicketId) =
            sqlx::query_as("SELECT 'local', 'pending', 9")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            back,
            (Delivery::Local, DeliveryStatus::Pending, TicketId(9))
        );
    }

    #[test]
    fn form_names_match_the_stored_ones() {
        for d in [Delivery::Local, Delivery::Agent, Delivery::Ssh] {
            assert_eq!(d.as_str().parse(), Ok(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        assert_eq!("telnet".parse::<Delivery>(), Err(()));
    }
}
