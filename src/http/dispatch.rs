//! Calls the gRPC adapter in process, so the bridge returns exactly what gRPC returns — the
//! same rules, the same `Status` — with the request's metadata and peer address carried over.

use std::{future::Future, net::SocketAddr};

use axum::http::StatusCode;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tonic::{
    Code, Request, Response, Status, metadata::MetadataMap, transport::server::TcpConnectInfo,
};

use super::error::Rejection;
use crate::{
    grpc::{IdentityApi, TokenApi},
    pb::{identity_service_server::IdentityService, token_service_server::TokenService},
};

/// The gRPC adapters the bridge forwards to.
#[derive(Clone)]
pub struct Apis {
    /// `identity.v1.IdentityService`.
    pub identity: IdentityApi,
    /// `identity.v1.TokenService`.
    pub tokens: TokenApi,
}

/// What travels with a bridged call besides its message.
pub struct CallContext {
    /// Headers carried over as metadata (`authorization`, `x-forwarded-for`, ...).
    pub metadata: MetadataMap,
    /// The HTTP client's address.
    pub peer: Option<SocketAddr>,
}

/// Why a bridged call has no reply.
#[derive(Debug)]
pub enum CallError {
    /// The bridge refused the request before any RPC ran: it does not decode into the
    /// RPC's message, as grpc-gateway refuses it.
    Rejected(Rejection),
    /// The RPC answered with this status.
    Failed(Status),
}

/// Decodes `message` into `Req`, calls `method` as gRPC would, and encodes the reply.
async fn forward<Req, Resp, F, Fut>(
    message: Value,
    context: CallContext,
    method: F,
) -> Result<Value, CallError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let decoded: Req = serde_json::from_value(message).map_err(|e| {
        CallError::Rejected(Rejection::bad_request(format!("invalid request body: {e}")))
    })?;
    let mut request = Request::new(decoded);
    *request.metadata_mut() = context.metadata;
    request.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: context.peer,
    });
    let response = method(request).await.map_err(CallError::Failed)?;
    serde_json::to_value(response.into_inner()).map_err(|e| {
        tracing::error!(error = %e, "a reply could not be encoded as JSON");
        CallError::Rejected(Rejection {
            http: StatusCode::INTERNAL_SERVER_ERROR,
            code: Code::Internal,
            message: "internal error".into(),
        })
    })
}

macro_rules! rpcs {
    ($($name:literal => $api:ident . $method:ident),* $(,)?) => {
        /// Every RPC the bridge can forward.
        pub const RPCS: &[&str] = &[$($name),*];

        /// Forwards one call to the RPC named `rpc`.
        ///
        /// # Errors
        /// The call's `Status`, or a rejection of a body that is not the RPC's message or of
        /// an RPC the bridge does not know.
        pub async fn call(
            apis: &Apis,
            rpc: &str,
            message: Value,
            context: CallContext,
        ) -> Result<Value, CallError> {
            match rpc {
                $($name => forward(message, context, |request| apis.$api.$method(request)).await,)*
                _ => Err(CallError::Rejected(Rejection {
                    http: StatusCode::NOT_FOUND,
                    code: Code::NotFound,
                    message: format!("no RPC named {rpc}"),
                })),
            }
        }
    };
}

rpcs! {
    "Register" => identity.register,
    "VerifyOtp" => identity.verify_otp,
    "ResendOtp" => identity.resend_otp,
    "Activate" => identity.activate,
    "ResendActivationEmail" => identity.resend_activation_email,
    "Login" => identity.login,
    "Refresh" => identity.refresh,
    "Logout" => identity.logout,
    "LogoutAll" => identity.logout_all,
    "PasswordReset" => identity.password_reset,
    "PasswordResetConfirm" => identity.password_reset_confirm,
    "GoogleLogin" => identity.google_login,
    "ListUsers" => identity.list_users,
    "GetUser" => identity.get_user,
    "ListSessions" => identity.list_sessions,
    "RevokeSession" => identity.revoke_session,
    "LogoutOthers" => identity.logout_others,
    "ChangePassword" => identity.change_password,
    "ChangeEmail" => identity.change_email,
    "ConfirmEmailChange" => identity.confirm_email_change,
    "DeleteAccount" => identity.delete_account,
    "CreateUser" => identity.create_user,
    "UpdateUser" => identity.update_user,
    "DeleteUser" => identity.delete_user,
    "ListAuditEvents" => identity.list_audit_events,
    "IntrospectToken" => tokens.introspect_token,
}
