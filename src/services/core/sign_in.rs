//! What every way of signing in shares: starting the session and its tokens, and the proofs
//! of identity more than one feature checks (a Google credential).

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{audit::AuditEntry, effects::Tx};
use crate::{
    auth::{ChallengeToken, RefreshToken, SessionAssurance},
    clock::span,
    domain::{
        Actor, AuditKind, AuthMethod, AuthMethods, Email, FactorId, FactorKind, SessionId, UserId,
    },
    error::{ServiceError, ServiceResult},
    google::{GoogleError, GoogleIdentity},
    services::{Caller, Services},
    storage::{FactorRow, MfaChallengeRow, SessionRow, UserRow},
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

/// How a sign-in's user proved who they are with a first factor.
#[derive(Clone, Copy)]
pub(crate) enum SignedIn<'a> {
    /// With the password, whose reserved sign-in attempt is given back with the session.
    Password { email: &'a Email, attempt: u32 },
    /// With a Google credential.
    Google,
    /// With a refresh token Django issued.
    DjangoRefresh,
    /// With a code or link mailed to the account's address.
    EmailCode,
    /// With the account's passkey `.0`, which did not verify its user.
    Passkey(&'a FactorId),
    /// With a passkey that verified its user: two factors by itself.
    VerifiedPasskey,
}

impl SignedIn<'_> {
    /// The kind of factor it is, as the session records it.
    fn auth_method(self) -> AuthMethod {
        match self {
            Self::Password { .. } => AuthMethod::Password,
            Self::Google => AuthMethod::Google,
            Self::DjangoRefresh => AuthMethod::DjangoToken,
            Self::EmailCode => AuthMethod::EmailCode,
            Self::Passkey(_) => AuthMethod::Passkey,
            Self::VerifiedPasskey => AuthMethod::VerifiedPasskey,
        }
    }
}

/// What a first factor leads to.
#[derive(Debug)]
pub enum SignInOutcome {
    /// A session: the account has no second factor.
    Session(TokenPair),
    /// The account has a second factor: `VerifySecondFactor` finishes the sign-in.
    SecondFactorRequired(SecondFactorChallenge),
}

/// The challenge a first factor answers for an account with a second factor.
#[derive(Debug)]
pub struct SecondFactorChallenge {
    /// Single use, for `VerifySecondFactor`.
    pub mfa_token: String,
    /// The kinds of second factor the account has.
    pub factors: Vec<FactorKind>,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
}

/// The first factor a session opens with, and the password state it was checked against.
#[derive(Clone, Copy)]
pub(crate) struct FirstFactor<'a> {
    /// Its kind.
    pub(crate) method: AuthMethod,
    /// The account's `password_changed_at` when it was checked: a session opens only if the
    /// password has not changed since, so a reset wins over a sign-in racing it.
    pub(crate) password_changed_at: NaiveDateTime,
    /// A password sign-in's reserved attempt, given back with the session.
    pub(crate) attempt: Option<(&'a Email, u32)>,
}

impl Services {
    /// Finishes a first factor for `user`, as read when it was checked, in a transaction of its
    /// own at `at`: see [`Tx::start_session`].
    pub(crate) async fn start_session(
        &self,
        user: &UserRow,
        caller: &Caller,
        signed_in: SignedIn<'_>,
        at: DateTime<Utc>,
    ) -> ServiceResult<SignInOutcome> {
        self.transaction_at(caller, at, async |tx| {
            tx.start_session(user, signed_in).await
        })
        .await
    }

    /// The kinds of the account's confirmed second factors, each once.
    pub(crate) async fn second_factor_kinds(
        &self,
        user_id: UserId,
    ) -> ServiceResult<Vec<FactorKind>> {
        let rows = self
            .connection()
            .await?
            .queries()
            .confirmed_factors(user_id)
            .await
            .context("loading the second factors")?;
        Ok(kinds_besides(&rows, None))
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

impl Tx<'_, '_> {
    /// Finishes a first factor for `user`, as read when it was checked, in this transaction: a
    /// session, or, for an account with a second factor (read here, so one added meanwhile
    /// counts), a challenge whose `mfa_token` `VerifySecondFactor` takes.
    pub(crate) async fn start_session(
        &mut self,
        user: &UserRow,
        signed_in: SignedIn<'_>,
    ) -> ServiceResult<SignInOutcome> {
        let first = FirstFactor {
            method: signed_in.auth_method(),
            password_changed_at: user.password_changed_at,
            attempt: match signed_in {
                SignedIn::Password { email, attempt } => Some((email, attempt)),
                _ => None,
            },
        };
        // A factor that is two by itself needs no second; a passkey asks for one of the
        // account's other factors, if it has any.
        let factors = match signed_in {
            SignedIn::VerifiedPasskey => Vec::new(),
            SignedIn::Passkey(used) => self.second_factor_kinds(user.id, Some(used)).await?,
            _ => self.second_factor_kinds(user.id, None).await?,
        };
        if factors.is_empty() {
            let methods = AuthMethods::of(&[first.method]);
            let pair = self.open_session(user, first, &methods).await?;
            return Ok(SignInOutcome::Session(pair));
        }
        let token = ChallengeToken::generate()
            .map_err(|e| anyhow::anyhow!("no randomness for an mfa_token: {e}"))?;
        let at = self.now();
        let expires_at = at + span(self.services.config.mfa_challenge_timeout);
        let challenge = MfaChallengeRow {
            token_hash: token.hash(),
            user_id: user.id,
            first_factor: first.method.as_str().to_owned(),
            password_changed_at: user.password_changed_at,
            created_at: at.naive_utc(),
            expires_at: expires_at.naive_utc(),
            used_at: None,
        };
        // The first factor was right: its attempt is no failure.
        if let Some((email, attempt)) = first.attempt {
            Services::forget_login_attempt_in(self, email, attempt).await?;
        }
        self.insert_mfa_challenge(&challenge)
            .await
            .context("recording the second-factor challenge")?;
        tracing::info!(user.id = %user.id, "first factor passed; a second is required");
        Ok(SignInOutcome::SecondFactorRequired(SecondFactorChallenge {
            mfa_token: token.into_string(),
            factors,
            expires_at,
        }))
    }

    /// The kinds of the account's confirmed second factors (but `besides`, the one a sign-in
    /// already used), each once.
    async fn second_factor_kinds(
        &mut self,
        user_id: UserId,
        besides: Option<&FactorId>,
    ) -> ServiceResult<Vec<FactorKind>> {
        let rows = self
            .confirmed_factors(user_id)
            .await
            .context("loading the second factors")?;
        Ok(kinds_besides(&rows, besides))
    }

    /// Opens a session for `user` with `methods`, in this transaction: only if the password is
    /// still the one the first factor was checked against.
    pub(crate) async fn open_session(
        &mut self,
        user: &UserRow,
        first: FirstFactor<'_>,
        methods: &AuthMethods,
    ) -> ServiceResult<TokenPair> {
        let services = self.services;
        let at = self.now();
        let now = at.naive_utc();
        let session = SessionRow {
            id: SessionId::generate(),
            user_id: user.id,
            created_at: now,
            expires_at: now + span(services.config.jwt.session_absolute_lifetime),
            revoked_at: None,
            device: self.caller.device.as_str().to_owned(),
            client_ip: self.caller.ip.map(|ip| ip.to_string()),
            last_refreshed_at: None,
            methods: methods.to_stored(),
            auth_time: Some(now),
        };
        let still_current = self
            .record_login(
                user.id,
                first.password_changed_at,
                first.method == AuthMethod::Password,
                now,
            )
            .await
            .context("recording the login")?;
        if !still_current {
            return Err(ServiceError::InvalidCredentials);
        }
        // In the session's transaction: one commit fewer per sign-in, and a sign-in that
        // loses to a password change stays counted.
        if let Some((email, attempt)) = first.attempt {
            Services::forget_login_attempt_in(self, email, attempt).await?;
        }
        self.insert_session(&session)
            .await
            .context("starting the session")?;
        let entry =
            AuditEntry::success(AuditKind::SignIn, Actor::User(user.id), user.id).detail(format!(
                "method={} aal={} session={}",
                methods.to_stored(),
                methods.aal().as_str(),
                session.id
            ));
        self.audit(entry).await?;
        let refresh = RefreshToken::generate()
            .map_err(|e| anyhow::anyhow!("no randomness for a refresh token: {e}"))?;
        let expires_at = services.refresh_expiry(&session, now);
        self.insert_refresh_token(&session.id, refresh.hash(), now, expires_at)
            .await
            .context("storing the refresh token")?;
        let access = services.issue_access_token(user, &session, at)?;
        Ok(TokenPair {
            access,
            refresh: refresh.into_string(),
        })
    }
}

/// The kinds of `factors` but `besides`, each once, in the order of their first.
fn kinds_besides(factors: &[FactorRow], besides: Option<&FactorId>) -> Vec<FactorKind> {
    let mut kinds = Vec::new();
    for kind in factors
        .iter()
        .filter(|row| Some(&row.id) != besides)
        .filter_map(|row| FactorKind::from_stored(&row.kind))
    {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}
