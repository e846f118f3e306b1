//! The `identity.v1.IdentityService` handlers: convert, call, convert.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, status::to_status};
use crate::{
    domain::IpNet,
    error::ServiceError,
    pb::{self, identity_service_server::IdentityService},
    services::{
        Caller, Services, account_changes::PASSWORD_CHANGED_MESSAGE, accounts::REGISTER_MESSAGE,
    },
};

/// Serves the identity API over gRPC.
#[derive(Clone)]
pub struct IdentityApi {
    services: Services,
    trusted_proxies: Arc<[IpNet]>,
}

impl IdentityApi {
    /// An adapter over `services`, believing `x-forwarded-for` only from `trusted_proxies`.
    #[must_use]
    pub fn new(services: Services, trusted_proxies: &[IpNet]) -> Self {
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
        let registration = convert::registration(request.into_inner()).map_err(to_status)?;
        let outcome = self.services.register(caller, registration).await;
        reply(outcome, |user| pb::RegisterResponse {
            user: user.map(convert::user),
            message: REGISTER_MESSAGE.into(),
        })
    }

    async fn verify_otp(
        &self,
        request: Request<pb::VerifyOtpRequest>,
    ) -> Reply<pb::VerifyOtpResponse> {
        let caller = self.caller(&request);
        let (email, otp) = convert::otp_verification(request.get_ref()).map_err(to_status)?;
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
        let email = convert::email(&request.get_ref().email).map_err(to_status)?;
        let outcome = self.services.resend_otp(caller, email).await;
        reply(outcome, |message| pb::ResendOtpResponse {
            message: message.into(),
        })
    }

    async fn activate(&self, request: Request<pb::ActivateRequest>) -> Reply<pb::ActivateResponse> {
        let caller = self.caller(&request);
        let req = request.get_ref();
        let (uid, token) = convert::link(&req.uidb64, &req.token).map_err(to_status)?;
        let outcome = self.services.activate(caller, uid, token).await;
        reply(outcome, |user| pb::ActivateResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn resend_activation_email(
        &self,
        request: Request<pb::ResendActivationEmailRequest>,
    ) -> Reply<pb::ResendActivationEmailResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.get_ref().email).map_err(to_status)?;
        let outcome = self.services.resend_activation_email(caller, email).await;
        reply(outcome, |message| pb::ResendActivationEmailResponse {
            message: message.into(),
        })
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let caller = self.caller(&request);
        let (email, password) = convert::credentials(request.get_ref()).map_err(to_status)?;
        let outcome = self.services.login(caller, email, password).await;
        reply(outcome, |outcome| {
            let (access, refresh, mfa_required) = convert::sign_in(outcome);
            pb::LoginResponse {
                access,
                refresh,
                mfa_required,
            }
        })
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Reply<pb::RefreshResponse> {
        let caller = self.caller(&request);
        let token = convert::refresh_token(&request.get_ref().refresh).map_err(to_status)?;
        let outcome = self.services.refresh(caller, token).await;
        reply(outcome, |outcome| {
            let (access, refresh, mfa_required) = convert::sign_in(outcome);
            pb::RefreshResponse {
                access,
                refresh,
                mfa_required,
            }
        })
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let caller = self.caller(&request);
        let token = convert::refresh_token(&request.get_ref().refresh).map_err(to_status)?;
        let outcome = self.services.logout(caller, token).await;
        reply(outcome, |()| pb::LogoutResponse {})
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Reply<pb::LogoutAllResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let outcome = self.services.logout_all(caller, credentials).await;
        reply(outcome, |revoked| pb::LogoutAllResponse {
            revoked_sessions: i64::try_from(revoked).unwrap_or(i64::MAX),
        })
    }

    async fn password_reset(
        &self,
        request: Request<pb::PasswordResetRequest>,
    ) -> Reply<pb::PasswordResetResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.get_ref().email).map_err(to_status)?;
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
        let (uid, token, password) =
            convert::password_reset(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .password_reset_confirm(caller, uid, token, password)
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
        let credential = convert::google_credential(request.get_ref()).map_err(to_status)?;
        let outcome = self.services.google_login(caller, credential).await;
        reply(outcome, |outcome| {
            let (access, refresh, mfa_required) = convert::sign_in(outcome);
            pb::GoogleLoginResponse {
                access,
                refresh,
                mfa_required,
            }
        })
    }

    async fn start_email_sign_in(
        &self,
        request: Request<pb::StartEmailSignInRequest>,
    ) -> Reply<pb::StartEmailSignInResponse> {
        let caller = self.caller(&request);
        let email = convert::email(&request.get_ref().email).map_err(to_status)?;
        let outcome = self.services.start_email_sign_in(caller, email).await;
        reply(outcome, |message| pb::StartEmailSignInResponse {
            message: message.into(),
        })
    }

    async fn finish_email_sign_in(
        &self,
        request: Request<pb::FinishEmailSignInRequest>,
    ) -> Reply<pb::FinishEmailSignInResponse> {
        let caller = self.caller(&request);
        let proof = convert::email_sign_in_proof(request.get_ref()).map_err(to_status)?;
        let outcome = self.services.finish_email_sign_in(caller, proof).await;
        reply(outcome, |outcome| {
            let (access, refresh, mfa_required) = convert::sign_in(outcome);
            pb::FinishEmailSignInResponse {
                access,
                refresh,
                mfa_required,
            }
        })
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let credentials = convert::access_credentials(&request);
        let (size, token) = convert::page(request.get_ref()).map_err(to_status)?;
        let filter = convert::user_filter(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .list_users(credentials, filter, size, token)
            .await;
        reply(outcome, |page| pb::ListUsersResponse {
            users: page.users.into_iter().map(convert::user).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let credentials = convert::access_credentials(&request);
        let outcome = self.services.list_sessions(credentials).await;
        reply(outcome, |devices| pb::ListSessionsResponse {
            sessions: devices.into_iter().map(convert::session).collect(),
        })
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Reply<pb::RevokeSessionResponse> {
        let credentials = convert::access_credentials(&request);
        let session_id = convert::session_id(&request.get_ref().session_id).map_err(to_status)?;
        let caller = self.caller(&request);
        let outcome = self
            .services
            .revoke_own_session(caller, credentials, session_id)
            .await;
        reply(outcome, |()| pb::RevokeSessionResponse {})
    }

    async fn logout_others(
        &self,
        request: Request<pb::LogoutOthersRequest>,
    ) -> Reply<pb::LogoutOthersResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let outcome = self.services.logout_others(caller, credentials).await;
        reply(outcome, |revoked| pb::LogoutOthersResponse {
            revoked_sessions: i64::try_from(revoked).unwrap_or(i64::MAX),
        })
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        let credentials = convert::access_credentials(&request);
        let id = convert::user_id(request.get_ref().id).map_err(to_status)?;
        let outcome = self.services.get_user(credentials, id).await;
        reply(outcome, |user| pb::GetUserResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Reply<pb::ChangePasswordResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let (proof, new_password) =
            convert::password_change(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .change_password(caller, credentials, proof, new_password)
            .await;
        reply(outcome, |revoked| pb::ChangePasswordResponse {
            message: PASSWORD_CHANGED_MESSAGE.into(),
            revoked_sessions: i64::try_from(revoked).unwrap_or(i64::MAX),
        })
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Reply<pb::ChangeEmailResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let (new_email, proof) = convert::email_change(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .change_email(caller, credentials, new_email, proof)
            .await;
        reply(outcome, |message| pb::ChangeEmailResponse {
            message: message.into(),
        })
    }

    async fn confirm_email_change(
        &self,
        request: Request<pb::ConfirmEmailChangeRequest>,
    ) -> Reply<pb::ConfirmEmailChangeResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let otp = convert::otp(&request.get_ref().otp).map_err(to_status)?;
        let outcome = self
            .services
            .confirm_email_change(caller, credentials, otp)
            .await;
        reply(outcome, |user| pb::ConfirmEmailChangeResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Reply<pb::DeleteAccountResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let proof = convert::account_deletion(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .delete_account(caller, credentials, proof)
            .await;
        reply(outcome, |()| pb::DeleteAccountResponse {})
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Reply<pb::CreateUserResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let new_user = convert::new_user_by_admin(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .create_user(caller, credentials, new_user)
            .await;
        reply(outcome, |user| pb::CreateUserResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Reply<pb::UpdateUserResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let (id, update) = convert::user_update(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .update_user(caller, credentials, id, update)
            .await;
        reply(outcome, |user| pb::UpdateUserResponse {
            user: Some(convert::user(user)),
        })
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let id = convert::user_id(request.get_ref().id).map_err(to_status)?;
        let etag = convert::etag(&request.get_ref().etag);
        let outcome = self
            .services
            .delete_user(caller, credentials, id, etag)
            .await;
        reply(outcome, |()| pb::DeleteUserResponse {})
    }

    async fn start_totp_enrollment(
        &self,
        request: Request<pb::StartTotpEnrollmentRequest>,
    ) -> Reply<pb::StartTotpEnrollmentResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let name = convert::factor_name(&request.get_ref().name).map_err(to_status)?;
        let outcome = self
            .services
            .start_totp_enrollment(caller, credentials, name)
            .await;
        reply(outcome, convert::totp_enrollment)
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<pb::ConfirmTotpEnrollmentRequest>,
    ) -> Reply<pb::ConfirmTotpEnrollmentResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let (id, code) = convert::factor_code(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .confirm_totp_enrollment(caller, credentials, id, code)
            .await;
        reply(outcome, |confirmed| pb::ConfirmTotpEnrollmentResponse {
            factor: Some(convert::factor(confirmed.factor)),
            recovery_codes: confirmed.recovery_codes,
        })
    }

    async fn start_passkey_registration(
        &self,
        request: Request<pb::StartPasskeyRegistrationRequest>,
    ) -> Reply<pb::StartPasskeyRegistrationResponse> {
        let credentials = convert::access_credentials(&request);
        let outcome = self.services.start_passkey_registration(credentials).await;
        reply(outcome, |started| pb::StartPasskeyRegistrationResponse {
            options: convert::browser_options(&started.options),
            ceremony_id: started.ceremony_id,
            expires_at: Some(convert::timestamp(started.expires_at)),
        })
    }

    async fn finish_passkey_registration(
        &self,
        request: Request<pb::FinishPasskeyRegistrationRequest>,
    ) -> Reply<pb::FinishPasskeyRegistrationResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let message = request.get_ref();
        let ceremony_id = convert::ceremony_id(&message.ceremony_id).map_err(to_status)?;
        let answer =
            convert::browser_json("credential", message.credential.as_ref()).map_err(to_status)?;
        let name = convert::passkey_name(&message.name).map_err(to_status)?;
        let outcome = self
            .services
            .finish_passkey_registration(caller, credentials, &ceremony_id, &answer, name)
            .await;
        reply(outcome, |confirmed| pb::FinishPasskeyRegistrationResponse {
            factor: Some(convert::factor(confirmed.factor)),
            recovery_codes: confirmed.recovery_codes,
        })
    }

    async fn start_passkey_sign_in(
        &self,
        request: Request<pb::StartPasskeySignInRequest>,
    ) -> Reply<pb::StartPasskeySignInResponse> {
        let caller = self.caller(&request);
        let purpose = convert::passkey_ceremony_for(&request).map_err(to_status)?;
        let outcome = self.services.start_passkey_sign_in(caller, purpose).await;
        reply(outcome, |started| pb::StartPasskeySignInResponse {
            options: convert::browser_options(&started.options),
            ceremony_id: started.ceremony_id,
            expires_at: Some(convert::timestamp(started.expires_at)),
        })
    }

    async fn finish_passkey_sign_in(
        &self,
        request: Request<pb::FinishPasskeySignInRequest>,
    ) -> Reply<pb::FinishPasskeySignInResponse> {
        let caller = self.caller(&request);
        let message = request.get_ref();
        let ceremony_id = convert::ceremony_id(&message.ceremony_id).map_err(to_status)?;
        let answer =
            convert::browser_json("credential", message.credential.as_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .finish_passkey_sign_in(caller, &ceremony_id, &answer)
            .await;
        reply(outcome, |outcome| {
            let (access, refresh, mfa_required) = convert::sign_in(outcome);
            pb::FinishPasskeySignInResponse {
                access,
                refresh,
                mfa_required,
            }
        })
    }

    async fn verify_second_factor(
        &self,
        request: Request<pb::VerifySecondFactorRequest>,
    ) -> Reply<pb::VerifySecondFactorResponse> {
        let caller = self.caller(&request);
        let (token, proof) = convert::second_factor(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .verify_second_factor(caller, token, proof)
            .await;
        reply(outcome, |pair| pb::VerifySecondFactorResponse {
            access: pair.access,
            refresh: pair.refresh,
        })
    }

    async fn step_up(&self, request: Request<pb::StepUpRequest>) -> Reply<pb::StepUpResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let req = request.get_ref();
        let proof =
            convert::second_factor_proof(&req.totp_code, &req.recovery_code, req.passkey.as_ref())
                .map_err(to_status)?;
        let outcome = self.services.step_up(caller, credentials, proof).await;
        reply(outcome, |access| pb::StepUpResponse { access })
    }

    async fn remove_factor(
        &self,
        request: Request<pb::RemoveFactorRequest>,
    ) -> Reply<pb::RemoveFactorResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let id = convert::factor_id(&request.get_ref().factor_id).map_err(to_status)?;
        let outcome = self.services.remove_factor(caller, credentials, id).await;
        reply(outcome, |()| pb::RemoveFactorResponse {})
    }

    async fn rename_factor(
        &self,
        request: Request<pb::RenameFactorRequest>,
    ) -> Reply<pb::RenameFactorResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let (id, name) = convert::factor_rename(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .rename_factor(caller, credentials, id, name)
            .await;
        reply(outcome, |factor| pb::RenameFactorResponse {
            factor: Some(convert::factor(factor)),
        })
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Reply<pb::RegenerateRecoveryCodesResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let outcome = self
            .services
            .regenerate_recovery_codes(caller, credentials)
            .await;
        reply(outcome, |recovery_codes| {
            pb::RegenerateRecoveryCodesResponse { recovery_codes }
        })
    }

    async fn list_factors(
        &self,
        request: Request<pb::ListFactorsRequest>,
    ) -> Reply<pb::ListFactorsResponse> {
        let credentials = convert::access_credentials(&request);
        let outcome = self.services.list_factors(credentials).await;
        reply(outcome, |listed| pb::ListFactorsResponse {
            factors: listed.factors.into_iter().map(convert::factor).collect(),
            recovery_codes_left: i32::try_from(listed.recovery_codes_left).unwrap_or(i32::MAX),
        })
    }

    async fn reset_user_factors(
        &self,
        request: Request<pb::ResetUserFactorsRequest>,
    ) -> Reply<pb::ResetUserFactorsResponse> {
        let caller = self.caller(&request);
        let credentials = convert::access_credentials(&request);
        let id = convert::user_id(request.get_ref().id).map_err(to_status)?;
        let outcome = self
            .services
            .reset_user_factors(caller, credentials, id)
            .await;
        reply(outcome, |()| pb::ResetUserFactorsResponse {})
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        let credentials = convert::access_credentials(&request);
        let (query, size, token) = convert::audit_query(request.get_ref()).map_err(to_status)?;
        let outcome = self
            .services
            .list_audit_events(credentials, query, size, token)
            .await;
        reply(outcome, |page| pb::ListAuditEventsResponse {
            events: page.events.into_iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }
}
