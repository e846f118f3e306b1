//! Calls the gRPC adapter in process, so the bridge returns exactly what gRPC returns — the
//! same rules, the same `Status` — with the request's metadata and peer address carried over.

use std::{future::Future, net::SocketAddr};

use axum::{body::Bytes, http::StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
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

/// The request message as the bridge has it: a body-only route's JSON body, decoded straight
/// into the RPC's message, or the fields gathered from the body, query and path.
pub enum Input {
    /// The body, a JSON object (`{}` when empty), which is the whole message.
    Body(Bytes),
    /// The message's fields.
    Fields(Map<String, Value>),
}

impl Input {
    /// The message `Req` it holds, or the bridge's refusal of it.
    fn decode<Req: DeserializeOwned>(self) -> Result<Req, Rejection> {
        let invalid =
            |e: serde_json::Error| Rejection::bad_request(format!("invalid request body: {e}"));
        match self {
            Self::Fields(fields) => serde_json::from_value(Value::Object(fields)).map_err(invalid),
            Self::Body(body) if body.is_empty() => serde_json::from_slice(b"{}").map_err(invalid),
            Self::Body(body) => serde_json::from_slice(&body).map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    Rejection::bad_request(format!("the request body is not valid JSON: {e}"))
                } else if !body.trim_ascii_start().starts_with(b"{") {
                    Rejection::bad_request("the request body must be a JSON object")
                } else {
                    invalid(e)
                }
            }),
        }
    }
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

/// Decodes `input` into `Req`, calls `method` as gRPC would, and encodes the reply as JSON.
async fn forward<Req, Resp, F, Fut>(
    input: Input,
    context: CallContext,
    method: F,
) -> Result<Bytes, CallError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let decoded: Req = input.decode().map_err(CallError::Rejected)?;
    let mut request = Request::new(decoded);
    *request.metadata_mut() = context.metadata;
    request.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: context.peer,
    });
    let response = method(request).await.map_err(CallError::Failed)?;
    serde_json::to_vec(&response.into_inner())
        .map(Bytes::from)
        .map_err(|e| {
            tracing::error!(error = %e, "a reply could not be encoded as JSON");
            CallError::Rejected(Rejection {
                http: StatusCode::INTERNAL_SERVER_ERROR,
                code: Code::Internal,
                message: "internal error".into(),
            })
        })
}

macro_rules! rpcs {
    ($($rpc:ident => $api:ident . $method:ident),* $(,)?) => {
        /// An RPC the bridge forwards, resolved from its name once, when the router is built.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Rpc {
            $(
                #[doc = concat!("`", stringify!($rpc), "`.")]
                $rpc,
            )*
        }

        impl Rpc {
            /// The RPC named `name`, if the bridge forwards it.
            #[must_use]
            pub fn named(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($rpc) => Some(Self::$rpc),)*
                    _ => None,
                }
            }
        }

        /// Forwards one call to `rpc`.
        ///
        /// # Errors
        /// The call's `Status`, or a rejection of a body that is not the RPC's message.
        pub async fn call(
            apis: &Apis,
            rpc: Rpc,
            input: Input,
            context: CallContext,
        ) -> Result<Bytes, CallError> {
            match rpc {
                $(Rpc::$rpc => forward(input, context, |request| apis.$api.$method(request)).await,)*
            }
        }
    };
}

rpcs! {
    Register => identity.register,
    VerifyOtp => identity.verify_otp,
    ResendOtp => identity.resend_otp,
    Activate => identity.activate,
    ResendActivationEmail => identity.resend_activation_email,
    Login => identity.login,
    StartEmailSignIn => identity.start_email_sign_in,
    FinishEmailSignIn => identity.finish_email_sign_in,
    StartPasskeyRegistration => identity.start_passkey_registration,
    FinishPasskeyRegistration => identity.finish_passkey_registration,
    StartPasskeySignIn => identity.start_passkey_sign_in,
    FinishPasskeySignIn => identity.finish_passkey_sign_in,
    Refresh => identity.refresh,
    Logout => identity.logout,
    LogoutAll => identity.logout_all,
    PasswordReset => identity.password_reset,
    PasswordResetConfirm => identity.password_reset_confirm,
    GoogleLogin => identity.google_login,
    ListUsers => identity.list_users,
    GetUser => identity.get_user,
    ListSessions => identity.list_sessions,
    RevokeSession => identity.revoke_session,
    LogoutOthers => identity.logout_others,
    ChangePassword => identity.change_password,
    ChangeEmail => identity.change_email,
    ConfirmEmailChange => identity.confirm_email_change,
    DeleteAccount => identity.delete_account,
    CreateUser => identity.create_user,
    UpdateUser => identity.update_user,
    DeleteUser => identity.delete_user,
    ListAuditEvents => identity.list_audit_events,
    StartTotpEnrollment => identity.start_totp_enrollment,
    ConfirmTotpEnrollment => identity.confirm_totp_enrollment,
    ListFactors => identity.list_factors,
    VerifySecondFactor => identity.verify_second_factor,
    StepUp => identity.step_up,
    RemoveFactor => identity.remove_factor,
    RenameFactor => identity.rename_factor,
    RegenerateRecoveryCodes => identity.regenerate_recovery_codes,
    ResetUserFactors => identity.reset_user_factors,
    IntrospectToken => tokens.introspect_token,
}
