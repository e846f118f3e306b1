//! `identity`: a standalone identity microservice over gRPC.
//!
//! It registers users by email, verifies them by one-time code or emailed link, issues and
//! rotates JWT sessions, resets passwords and revokes sessions, over Postgres or an embedded
//! SQLite file.
//!
//! # Layout
//!
//! - [`config`]: typed settings from the environment and `.env`.
//! - [`telemetry`]: logging set-up and blocking work that keeps its span.
//! - [`clock`]: the one source of "now", adjustable in tests.
//! - [`domain`]: parsed newtypes (`Email`, `Password`, `Otp`, `UserId`, ...) and the `User`.
//! - [`error`]: `ServiceError`, the service layer's one error type.
//! - [`storage`]: the database boundary; the backend is chosen once, in `Store`.
//! - [`auth`]: password hashing, JWTs, refresh tokens and emailed link tokens.
//! - [`email`]: templates, the outbox worker and the SMTP or log transport.
//! - [`text`]: hex, and escaping for URLs and HTML, shared by email and the bridge's pages.
//! - [`google`]: verifying Google access and ID tokens.
//! - [`services`]: every rule and transaction, once; the adapters only convert. One file per
//!   feature, each a leaf over [`services::core`] (access, account transitions, sign-in, the
//!   transaction with its effects, limits) and storage.
//! - [`grpc`]: the tonic adapter, reflection, health and the one `ServiceError` to `Status` map.
//! - [`http`]: the JSON bridge (the seed's HTTP paths), the pages a person clicks, health, and
//!   the metrics listener.
//! - [`net`]: the cap on open connections every listener shares.
//! - [`django_source`]: what `import-django` reads: dumpdata files or the Django database.
//! - [`app`]: wires it all up, binds listeners and runs until shut down.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod django_source;
pub mod domain;
pub mod email;
pub mod error;
pub mod google;
pub mod grpc;
pub mod http;
pub mod net;
pub mod services;
pub mod storage;
pub mod telemetry;
pub mod text;

/// Code generated from `proto/identity/v1/identity.proto`.
#[allow(
    missing_docs,
    clippy::doc_markdown,
    reason = "generated code; its docs come from the .proto"
)]
pub mod pb {
    tonic::include_proto!("identity.v1");
    include!(concat!(env!("OUT_DIR"), "/identity.v1.serde.rs"));

    /// The encoded descriptor set of the contract, with options kept, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));

    /// The JSON a `google.protobuf.Struct` carries (a passkey ceremony's W3C options, or a
    /// browser's answer), with its whole numbers as integers again: a `Struct` holds every
    /// number as a double (`-7.0`), which JavaScript reads as the integer it is and typed
    /// decoders do not.
    ///
    /// # Errors
    /// When the `Struct` holds a number JSON cannot (NaN, an infinity).
    pub fn struct_json(
        value: &pbjson_types::Struct,
    ) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(value).map(whole_numbers)
    }

    fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Number(number) => match number.as_f64() {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "a whole number within i64's range converts exactly"
                )]
                Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
                    Value::from(float as i64)
                }
                _ => Value::Number(number),
            },
            Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, value)| (key, whole_numbers(value)))
                    .collect(),
            ),
            other => other,
        }
    }
}
