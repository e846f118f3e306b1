//! The gRPC adapter: it parses wire messages into domain types, calls one service method, and
//! converts the result back. No rule lives here.
//!
//! - [`server`]: the tonic server with reflection, health and size limits.
//! - `service`: the `identity.v1.IdentityService` handlers.
//! - `token_service`: the `identity.v1.TokenService` handlers, for backend services.
//! - `convert`: wire to domain and back.
//! - [`status`]: the one map from `ServiceError` to `tonic::Status`.

mod convert;
pub mod server;
mod service;
pub mod status;
mod token_service;

pub use service::IdentityApi;
pub use token_service::TokenApi;
