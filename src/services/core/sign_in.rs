//! What every way of signing in shares: starting the session and its tokens, and the proofs
//! of identity more than one feature checks (a Google credential).

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::audit::AuditEntry;
use crate::{
    auth::{RefreshToken, SessionAssurance},
    clock::span,
    domain::{Actor, AuditKind, AuthMethod, AuthMethods, Email, SessionId, UserId},
    error::{ServiceError, ServiceResult},
    google::{GoogleError, GoogleIdentity},
    services::{Caller, Services},
    storage::{SessionRow, UserRow},
};

/// The provider name stored with linked Google identities.
pub(crate) const GOOGLE: &str = "google";

/// An access and a refresh token.
#[derive(Debug)]
pub struct TokenPair {
    /// JWT access token.
    pub access: String,
    /// Opaque refresh token.
    pub refresh: String,
}

/// A Google credential, as an app holds it.
#[derive(Debug)]
pub enum GoogleCredential {
    /// An OAuth 2.0 access token.
    AccessToken(String),
    /// An OpenID Connect ID token.
    IdToken(String),
}

/// How a session's user proved who they are.
#[derive(Clone, Copy)]
pub(crate) enum SignedIn<'a> {
    /// With the password, whose reserved sign-in attempt is given back with the session.
    Password { email: &'a Email, attempt: u32 },
    /// With a Google credential.
    Google,
    /// With a refresh token Django issued.
    DjangoRefresh,
}

impl SignedIn<'_> {
    /// The kind of factor it is, as the session records it.
    fn auth_method(self) -> AuthMethod {
        match self {
            Self::Password { .. } => AuthMethod::Password,
            Self::Google => AuthMethod::Google,
            Self::DjangoRefresh => AuthMethod::DjangoToken,
        }
    }

    /// The method the audit trail names.
    fn method(self) -> &'static str {
        match self {
            Self::Password { .. } => "password",
            Self::Google => "google",
            Self::DjangoRefresh => "django-refresh",
        }
    }
}

impl Services {
    /// Starts a session for `user` as it was read when the sign-in was decided: if its
    /// password has changed since, the sign-in checked a password that no longer works and
    /// is refused, so a reset always wins over a login racing it.
    pub(crate) async fn start_session(
        &self,
        user: &UserRow,
        caller: &Caller,
        signed_in: SignedIn<'_>,
        at: DateTime<Utc>,
    ) -> ServiceResult<TokenPair> {
        let method = signed_in.method();
        let now = at.naive_utc();
        let session = SessionRow {
            id: SessionId::generate(),
            user_id: user.id,
            created_at: now,
            expires_at: now + span(self.config.jwt.session_absolute_lifetime),
            revoked_at: None,
            device: caller.device.as_str().to_owned(),
            client_ip: caller.ip.map(|ip| ip.to_string()),
            last_refreshed_at: None,
            methods: AuthMethods::of(&[signed_in.auth_method()]).to_stored(),
            auth_time: Some(now),
        };
        let access = self.issue_access_token(user, &session, at)?;
        let refresh = self
            .transaction_at(caller, at, async |tx| {
                let still_current = tx
                    .record_login(
                        user.id,
                        user.password_changed_at,
                        matches!(signed_in, SignedIn::Password { .. }),
                        now,
                    )
                    .await
                    .context("recording the login")?;
                if !still_current {
                    return Err(ServiceError::InvalidCredentials);
                }
                // In the session's transaction: one commit fewer per sign-in, and a sign-in
                // that loses to a password change stays counted.
                if let SignedIn::Password { email, attempt } = signed_in {
                    Self::forget_login_attempt_in(tx, email, attempt).await?;
                }
                tx.insert_session(&session)
                    .await
                    .context("starting the session")?;
                let entry = AuditEntry::success(AuditKind::SignIn, Actor::User(user.id), user.id)
                    .detail(format!("method={method} session={}", session.id));
                tx.audit(entry).await?;
                let first = RefreshToken::generate()
                    .map_err(|e| anyhow::anyhow!("no randomness for a refresh token: {e}"))?;
                tx.insert_refresh_token(
                    &session.id,
                    first.hash(),
                    now,
                    self.refresh_expiry(&session, now),
                )
                .await
                .context("storing the refresh token")?;
                Ok(first.into_string())
            })
            .await?;
        Ok(TokenPair { access, refresh })
    }

    /// When a refresh token issued at `now` for `session` expires: never after its absolute
    /// end.
    pub(crate) fn refresh_expiry(&self, session: &SessionRow, now: NaiveDateTime) -> NaiveDateTime {
        (now + span(self.config.jwt.refresh_lifetime)).min(session.expires_at)
    }

    /// A new access token for `user` in `session`, issued at `now`: it carries the session's
    /// assurance (`aal`, `amr`, `auth_time`), which a refresh keeps.
    pub(crate) fn issue_access_token(
        &self,
        user: &UserRow,
        session: &SessionRow,
        now: DateTime<Utc>,
    ) -> ServiceResult<String> {
        let methods = AuthMethods::from_stored(&session.methods);
        let assurance = SessionAssurance {
            methods: &methods,
            auth_time: session.authenticated_at().and_utc(),
        };
        Ok(self
            .tokens
            .issue(user.id, &user.email, &session.id, assurance, now)
            .context("signing an access token")?)
    }

    /// The Google identity a credential proves, as Google checks it now.
    ///
    /// # Errors
    /// `GoogleNotConfigured`, `GoogleRejected`, `GoogleUnavailable`.
    pub(crate) async fn verify_google(
        &self,
        credential: GoogleCredential,
    ) -> ServiceResult<GoogleIdentity> {
        if !self.google.is_configured() {
            return Err(ServiceError::GoogleNotConfigured);
        }
        let verified = match credential {
            GoogleCredential::AccessToken(token) => self.google.verify_access_token(&token).await,
            GoogleCredential::IdToken(token) => self.google.verify_id_token(&token).await,
        };
        verified.map_err(|e| match e {
            GoogleError::Rejected(reason) => ServiceError::GoogleRejected(reason),
            GoogleError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "Google could not be reached");
                ServiceError::GoogleUnavailable
            }
        })
    }

    /// Whether a Google identity is linked to the account `user_id`.
    pub(crate) async fn is_linked_to(
        &self,
        identity: &GoogleIdentity,
        user_id: UserId,
    ) -> ServiceResult<bool> {
        let mut conn = self.connection().await?;
        let linked = conn
            .queries()
            .linked_user(GOOGLE, &identity.subject)
            .await
            .context("finding a linked identity")?;
        Ok(linked == Some(user_id))
    }
}
