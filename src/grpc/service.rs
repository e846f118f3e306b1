//! The `identity.v1.IdentityService` handlers: convert, call, convert.

use std::{net::IpAddr, sync::Arc};

use tonic::{Request, Response, Status};

use super::{convert, status::to_status};
use crate::{
    domain::{LoginPassword, Otp, PageSize, PageToken, Password, PersonName, Uidb64, UserId},
    error::ServiceError,
    pb::{self, identity_service_server::IdentityService},
    services::{Caller, Services, accounts::Registration},
};

/// Serves the identity API over gRPC.
#[derive(Clone)]
pub struct IdentityApi {
    services: Services,
    trusted_proxies: Arc<[IpAddr]>,
}

impl IdentityApi {
    /// An adapter over `services`, believing `x-forwarded-for` only from `trusted_proxies`.
    #[must_use]
    pub fn new(services: Services, trusted_proxies: &[IpAddr]) -> Self {
        Self {
            services,
            trusted_proxies: trusted_proxies.into(),
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Caller {
        convert::caller(request, &self.trusted_proxies)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Wraps a service outcome as a gRPC reply.
fn reply<T, U>(outcome: Result<T, ServiceError>, to_wire: impl FnOnce(T) -> U) -> Reply<U> {
    outcome
        .map(|value| Response::new(to_wire(value)))
        .map_err(to_status)
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Reply<pb::RegisterResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let parsed = (|| {
            Ok::<_, ServiceError>(Registration {
                email: convert::email(&req.email)?,
                password: convert::field("password", Password::parse(&req.password))?,
                first_name: convert::field("first_name", PersonName::parse(&req.first_name))?,
                last_name: convert::field("last_name", PersonName::parse(&req.last_name))?,
            })
        })();
        let outcome = match parsed {
            Ok(registration) => self.services.register(caller, registration).await,
            Err(e) => Err(e),
        };
        reply(outcome, |user| pb::RegisterResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn verify_otp(
        &self,
        request: Request<pb::VerifyOtpRequest>,
    ) -> Reply<pb::VerifyOtpResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let email = convert::email(&req.email).map_err(to_status)?;
        let otp = convert::field("otp", Otp::parse(&req.otp)).map_err(to_status)?;
        let outcome = self.services.verify_otp(caller, email, otp).await;
        reply(outcome, |user| pb::VerifyOtpResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn resend_otp(
        &self,
        request: Request<pb::ResendOtpRequest>,
    ) -> Reply<pb::ResendOtpResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.into_inner().email).map_err(to_status)?;
        let outcome = self.services.resend_otp(caller, email).await;
        reply(outcome, |message| pb::ResendOtpResponse {
            message: message.into(),
        })
    }

    async fn activate(&self, request: Request<pb::ActivateRequest>) -> Reply<pb::ActivateResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let uid = convert::field("uidb64", Uidb64::parse(&req.uidb64)).map_err(to_status)?;
        let outcome = self.services.activate(caller, uid, req.token).await;
        reply(outcome, |user| pb::ActivateResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn resend_activation_email(
        &self,
        request: Request<pb::ResendActivationEmailRequest>,
    ) -> Reply<pb::ResendActivationEmailResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.into_inner().email).map_err(to_status)?;
        let outcome = self.services.resend_activation_email(caller, email).await;
        reply(outcome, |message| pb::ResendActivationEmailResponse {
            message: message.into(),
        })
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let email = convert::email(&req.email).map_err(to_status)?;
        let password =
            convert::field("password", LoginPassword::parse(&req.password)).map_err(to_status)?;
        let outcome = self.services.login(caller, email, password).await;
        reply(outcome, |pair| pb::LoginResponse {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Reply<pb::RefreshResponse> {
        let caller = self.caller(&request);
        let outcome = self
            .services
            .refresh(caller, &request.into_inner().refresh)
            .await;
        reply(outcome, |pair| pb::RefreshResponse {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let outcome = self.services.logout(&request.into_inner().refresh).await;
        reply(outcome, |()| pb::LogoutResponse {})
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Reply<pb::LogoutAllResponse> {
        let bearer = convert::bearer(&request);
        let outcome = self.services.logout_all(bearer.as_deref()).await;
        reply(outcome, |revoked| pb::LogoutAllResponse {
            revoked_sessions: i64::try_from(revoked).unwrap_or(i64::MAX),
        })
    }

    async fn password_reset(
        &self,
        request: Request<pb::PasswordResetRequest>,
    ) -> Reply<pb::PasswordResetResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.into_inner().email).map_err(to_status)?;
        let outcome = self.services.password_reset(caller, email).await;
        reply(outcome, |message| pb::PasswordResetResponse {
            message: message.into(),
        })
    }

    async fn password_reset_confirm(
        &self,
        request: Request<pb::PasswordResetConfirmRequest>,
    ) -> Reply<pb::PasswordResetConfirmResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let uid = convert::field("uidb64", Uidb64::parse(&req.uidb64)).map_err(to_status)?;
        let password = convert::field("new_password", Password::parse(&req.new_password))
            .map_err(to_status)?;
        let outcome = self
            .services
            .password_reset_confirm(caller, uid, req.token, password)
            .await;
        reply(outcome, |message| pb::PasswordResetConfirmResponse {
            message: message.into(),
        })
    }

    async fn google_login(
        &self,
        request: Request<pb::GoogleLoginRequest>,
    ) -> Reply<pb::GoogleLoginResponse> {
        let caller = self.caller(&request);
        let credential = convert::google_credential(request.into_inner()).map_err(to_status)?;
        let outcome = self.services.google_login(caller, credential).await;
        reply(outcome, |pair| pb::GoogleLoginResponse {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let bearer = convert::bearer(&request);
        let req = request.into_inner();
        let size =
            convert::field("page_size", PageSize::parse(req.page_size)).map_err(to_status)?;
        let token =
            convert::field("page_token", PageToken::parse(&req.page_token)).map_err(to_status)?;
        let outcome = self
            .services
            .list_users(bearer.as_deref(), size, token)
            .await;
        reply(outcome, |page| pb::ListUsersResponse {
            users: page.users.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        let bearer = convert::bearer(&request);
        let id = convert::field("id", UserId::parse(request.into_inner().id)).map_err(to_status)?;
        let outcome = self.services.get_user(bearer.as_deref(), id).await;
        reply(outcome, |user| pb::GetUserResponse {
            user: Some(convert::user(user)),
        })
    }
}
