//! Sessions: login, refresh-token rotation with reuse detection, logout, and authenticating
//! bearer access tokens.

use anyhow::Context;

use super::{Caller, Services, audit::AuditEntry, limits::IpBudget};
use crate::{
    auth::{AccessClaims, BearerToken, RefreshToken, TokenError, Verification},
    clock::span,
    domain::{
        Actor, AuditKind, AuditOutcome, Email, LoginPassword, RefreshTokenHash, SessionId, User,
    },
    email::Notice,
    error::{ServiceError, ServiceResult},
    storage::{Queries, SessionRow, UserRow},
};

/// An access and a refresh token.
#[derive(Debug)]
pub struct TokenPair {
    /// JWT access token.
    pub access: String,
    /// Opaque refresh token.
    pub refresh: String,
}

/// The user behind a verified bearer token, and the token's claims.
#[derive(Debug)]
pub struct Authenticated {
    /// The account, as it is now.
    pub user: User,
    /// The claims of the presented token.
    pub claims: AccessClaims,
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
    /// The method the audit trail names.
    fn method(self) -> &'static str {
        match self {
            Self::Password { .. } => "password",
            Self::Google => "google",
            Self::DjangoRefresh => "django-refresh",
        }
    }
}

/// What spending a refresh token found, decided inside its transaction.
enum Rotation {
    Rotated(TokenPair),
    Refused(ServiceError),
}

impl Services {
    /// Signs in with email and password and starts a session.
    ///
    /// # Errors
    /// `RateLimited`, `LoginThrottled`, `InvalidCredentials` (alike for unknown emails and wrong
    /// passwords), then, with the right password only, `NotVerified` or `AccountDisabled`.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        caller: Caller,
        email: Email,
        password: LoginPassword,
    ) -> ServiceResult<TokenPair> {
        self.spend_ip_budget(&caller, IpBudget::Login).await?;
        let attempt = self.reserve_login_attempt(&email).await?;
        let user = self.user_by_email(&email).await?;
        let user_id = user.as_ref().map(|u| u.id);
        let stored_hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let verification = self.hasher.verify(password.secret(), stored_hash).await?;
        let (Some(user), Verification::Valid { needs_rehash }) = (user, verification) else {
            if Self::is_burst(attempt) {
                self.audit_sign_in_burst(&caller, &email, user_id).await?;
            }
            return Err(ServiceError::InvalidCredentials);
        };
        let refusal = if !user.is_verified && self.config.verification.required {
            Some(ServiceError::NotVerified)
        } else if !user.is_active {
            Some(ServiceError::AccountDisabled)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // The password was right: the attempt is not a failure.
            self.forget_login_attempts(&email, attempt).await?;
            return Err(refusal);
        }
        if needs_rehash && let Some(old_hash) = &user.password_hash {
            self.upgrade_hash(&user, old_hash, &password).await?;
        }
        let signed_in = SignedIn::Password {
            email: &email,
            attempt,
        };
        let pair = self.start_session(&user, &caller, signed_in).await?;
        tracing::info!(user.id = %user.id, "signed in");
        Ok(pair)
    }

    /// Spends a refresh token and returns a new pair. A token that was already spent revokes
    /// its whole session: someone holds a copy.
    ///
    /// # Errors
    /// `RateLimited`, `TokenInvalid`, `TokenExpired`, `TokenReused`, `SessionRevoked`.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(
        &self,
        caller: Caller,
        presented: RefreshToken,
    ) -> ServiceResult<TokenPair> {
        self.spend_ip_budget(&caller, IpBudget::Refresh).await?;
        if self
            .django_refresh
            .accepts_now(presented.expose(), self.clock.now())
        {
            return self
                .exchange_django_refresh(&caller, presented.expose())
                .await;
        }
        let token_hash = presented.hash();
        let rotation = self
            .store
            .transaction(async |tx| {
                let now = self.clock.now_naive();
                let spent = tx
                    .spend_refresh_token(&token_hash, now)
                    .await
                    .context("spending the refresh token")?;
                let successor = presented.successor(&self.secret);
                let Some(spent) = spent else {
                    let owner = tx
                        .refresh_token_session(&token_hash)
                        .await
                        .context("looking up a refresh token")?;
                    let Some(session_id) = owner else {
                        return Ok(Rotation::Refused(ServiceError::TokenInvalid));
                    };
                    if self.is_retry(tx, &token_hash, &successor, now).await? {
                        // The same successor again, with a fresh access token: a client
                        // whose answer was lost is not signed out, and concurrent
                        // refreshes with one token all end in one new token.
                        return self.reissue(tx, &session_id, successor, now).await;
                    }
                    let revoked = tx
                        .revoke_session(&session_id, now)
                        .await
                        .context("revoking a reused session")?;
                    if revoked {
                        self.notify_session_revoked(tx, &caller, &session_id, now)
                            .await?;
                    }
                    tracing::warn!(session.id = %session_id, "refresh token reused; session revoked");
                    return Ok(Rotation::Refused(ServiceError::TokenReused));
                };
                let (spent, continued) = spent;
                if spent.expires_at <= now {
                    return Ok(Rotation::Refused(ServiceError::TokenExpired));
                }
                let (session, user) = match self.still_refreshable(tx, continued, now).await? {
                    Ok(live) => live,
                    Err(refusal) => return Ok(Rotation::Refused(refusal)),
                };
                tx.record_refresh(
                    &session.id,
                    successor.hash(),
                    now,
                    self.refresh_expiry(&session),
                )
                .await
                .context("recording the refresh")?;
                let access = self.issue_access_token(&user, &session.id)?;
                Ok::<_, ServiceError>(Rotation::Rotated(TokenPair {
                    access,
                    refresh: successor.into_string(),
                }))
            })
            .await?;
        // Refusals are decided inside the transaction but returned after it commits, so a
        // reuse's revocation (and its notice) is kept.
        match rotation {
            Rotation::Rotated(pair) => Ok(pair),
            Rotation::Refused(error) => {
                if matches!(error, ServiceError::TokenReused) {
                    self.outbox_wake.notify_one();
                }
                Err(error)
            }
        }
    }

    /// Whether a spent token is presented again within the reuse grace while the successor
    /// its spending issued is still unspent.
    async fn is_retry(
        &self,
        tx: &mut Queries<'_>,
        spent: &RefreshTokenHash,
        successor: &RefreshToken,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<bool> {
        let grace = self.config.jwt.refresh_reuse_grace;
        if grace.is_zero() {
            return Ok(false);
        }
        let spent_at = tx
            .refresh_token_spent_at(spent)
            .await
            .context("looking up when a refresh token was spent")?
            .flatten();
        let within_grace = spent_at.is_some_and(|at| now - at < span(grace));
        if !within_grace {
            return Ok(false);
        }
        let successor_unspent = tx
            .refresh_token_spent_at(&successor.hash())
            .await
            .context("looking up a refresh token's successor")?
            == Some(None);
        Ok(successor_unspent)
    }

    /// Answers a retried refresh: the live session's successor token again, with a fresh
    /// access token.
    async fn reissue(
        &self,
        tx: &mut Queries<'_>,
        session_id: &SessionId,
        successor: RefreshToken,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<Rotation> {
        let (session, user) = match self.refreshable(tx, session_id, now).await? {
            Ok(live) => live,
            Err(refusal) => return Ok(Rotation::Refused(refusal)),
        };
        let access = self.issue_access_token(&user, &session.id)?;
        tracing::info!(session.id = %session.id, "a retried refresh got the same successor");
        Ok(Rotation::Rotated(TokenPair {
            access,
            refresh: successor.into_string(),
        }))
    }

    /// The session a refresh continues and its user, or why it cannot: the session is
    /// revoked or past its absolute end, or its user is disabled (which ends it here).
    async fn refreshable(
        &self,
        tx: &mut Queries<'_>,
        session_id: &SessionId,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<Result<(SessionRow, UserRow), ServiceError>> {
        let live = tx
            .session_with_user(session_id)
            .await
            .context("loading the session and its user")?;
        self.still_refreshable(tx, live, now).await
    }

    /// [`Services::refreshable`] for a session and user already read.
    async fn still_refreshable(
        &self,
        tx: &mut Queries<'_>,
        live: Option<(SessionRow, UserRow)>,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<Result<(SessionRow, UserRow), ServiceError>> {
        let Some((session, user)) = live.filter(|(session, _)| session.revoked_at.is_none()) else {
            return Ok(Err(ServiceError::SessionRevoked));
        };
        if session.expires_at <= now {
            return Ok(Err(ServiceError::TokenExpired));
        }
        if !user.is_active {
            tx.revoke_session(&session.id, now)
                .await
                .context("revoking a disabled user's session")?;
            return Ok(Err(ServiceError::SessionRevoked));
        }
        Ok(Ok((session, user)))
    }

    /// Tells the owner of a session that a reused refresh token ended it, and records it.
    async fn notify_session_revoked(
        &self,
        tx: &mut Queries<'_>,
        caller: &Caller,
        session_id: &SessionId,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<()> {
        let session = tx
            .session(session_id)
            .await
            .context("loading the revoked session")?;
        let Some(session) = session else {
            return Ok(());
        };
        let owner = tx
            .user_by_id(session.user_id)
            .await
            .context("loading the session's owner")?;
        if let Some(owner) = owner {
            let notice =
                self.mailer
                    .notice(Notice::SessionRevoked, &owner.email, &owner.first_name, now);
            tx.enqueue_email(&notice)
                .await
                .context("queueing the session-revoked notice")?;
        }
        let entry = AuditEntry {
            kind: AuditKind::RefreshReuse,
            outcome: AuditOutcome::Failure,
            actor: Actor::Anonymous,
            subject: Some(session.user_id),
            detail: format!("session={session_id} revoked"),
        };
        self.audit(tx, caller, entry).await
    }

    /// Records that failed sign-ins for `email` reached the back-off.
    async fn audit_sign_in_burst(
        &self,
        caller: &Caller,
        email: &Email,
        subject: Option<crate::domain::UserId>,
    ) -> ServiceResult<()> {
        let entry = AuditEntry {
            kind: AuditKind::SignInThrottled,
            outcome: AuditOutcome::Failure,
            actor: Actor::Anonymous,
            subject,
            detail: format!("email={email}"),
        };
        let mut conn = self.connection().await?;
        self.audit(&mut conn.queries(), caller, entry).await
    }

    /// Ends the session a refresh token belongs to. As RFC 7009 asks, a token that is
    /// unknown, malformed or already spent answers the same: there is nothing left to end.
    ///
    /// # Errors
    /// Only when the database fails.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, caller: Caller, presented: RefreshToken) -> ServiceResult<()> {
        let token_hash = presented.hash();
        let now = self.clock.now_naive();
        self.store
            .transaction(async |tx| {
                let owner = tx
                    .refresh_token_session(&token_hash)
                    .await
                    .context("looking up a refresh token")?;
                let Some(session_id) = owner else {
                    return Ok(());
                };
                let session = tx
                    .session(&session_id)
                    .await
                    .context("loading the session")?;
                let revoked = tx
                    .revoke_session(&session_id, now)
                    .await
                    .context("revoking the session")?;
                if let Some(session) = session.filter(|_| revoked) {
                    let entry = AuditEntry::success(
                        AuditKind::SessionRevoke,
                        Actor::User(session.user_id),
                        session.user_id,
                    )
                    .detail(format!("session={session_id} by=logout"));
                    self.audit(tx, &caller, entry).await?;
                    tracing::info!(session.id = %session_id, "signed out");
                }
                Ok(())
            })
            .await
    }

    /// Ends every session of the bearer; returns how many were live.
    ///
    /// # Errors
    /// Those of [`Services::authenticate`].
    #[tracing::instrument(skip_all)]
    pub async fn logout_all(
        &self,
        caller: Caller,
        bearer: Option<BearerToken>,
    ) -> ServiceResult<u64> {
        let me = self.authenticate(bearer).await?.user.id;
        let revoked = self
            .store
            .transaction(async |tx| {
                let revoked = tx
                    .revoke_user_sessions(me, self.clock.now_naive())
                    .await
                    .context("revoking every session")?;
                let entry = AuditEntry::success(AuditKind::LogoutAll, Actor::User(me), me)
                    .detail(format!("sessions_revoked={revoked}"));
                self.audit(tx, &caller, entry).await?;
                Ok::<_, ServiceError>(revoked)
            })
            .await?;
        tracing::info!(user.id = %me, sessions = revoked, "signed out everywhere");
        Ok(u64::try_from(revoked).unwrap_or(u64::MAX))
    }

    /// Verifies a bearer access token and that its session is still live.
    ///
    /// # Errors
    /// `Unauthenticated` (no token), `TokenInvalid`, `TokenExpired`, `SessionRevoked`.
    pub async fn authenticate(&self, bearer: Option<BearerToken>) -> ServiceResult<Authenticated> {
        let token = bearer.ok_or(ServiceError::Unauthenticated)?;
        let now = self.clock.now();
        let verified = self
            .tokens
            .verify(token.expose(), now)
            .map_err(|e| match e {
                TokenError::Expired => ServiceError::TokenExpired,
                TokenError::Invalid | TokenError::Signing(_) => ServiceError::TokenInvalid,
            })?;
        let mut conn = self.connection().await?;
        let bearer = conn
            .queries()
            .session_with_user(&verified.session_id)
            .await
            .context("loading the session and its user")?;
        let user = bearer
            .filter(|(session, user)| {
                session.revoked_at.is_none()
                    && session.expires_at > now.naive_utc()
                    && user.id == verified.user_id
                    && user.is_active
            })
            .map(|(_, user)| user)
            .ok_or(ServiceError::SessionRevoked)?;
        Ok(Authenticated {
            user: self.to_user(&user),
            claims: verified.claims,
        })
    }

    /// Starts a session for `user` as it was read when the sign-in was decided: if its
    /// password has changed since, the sign-in checked a password that no longer works and
    /// is refused, so a reset always wins over a login racing it.
    pub(crate) async fn start_session(
        &self,
        user: &UserRow,
        caller: &Caller,
        signed_in: SignedIn<'_>,
    ) -> ServiceResult<TokenPair> {
        let method = signed_in.method();
        let now = self.clock.now_naive();
        let session = SessionRow {
            id: SessionId::generate(),
            user_id: user.id,
            created_at: now,
            expires_at: now + span(self.config.jwt.session_absolute_lifetime),
            revoked_at: None,
            device: caller.device.as_str().to_owned(),
            client_ip: caller.ip.map(|ip| ip.to_string()),
            last_refreshed_at: None,
        };
        let access = self.issue_access_token(user, &session.id)?;
        let refresh = self
            .store
            .transaction(async |tx| {
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
                self.audit(tx, caller, entry).await?;
                let first = RefreshToken::generate()
                    .map_err(|e| anyhow::anyhow!("no randomness for a refresh token: {e}"))?;
                self.issue_refresh_token(tx, &session, first).await
            })
            .await?;
        Ok(TokenPair { access, refresh })
    }

    async fn issue_refresh_token(
        &self,
        tx: &mut Queries<'_>,
        session: &SessionRow,
        token: RefreshToken,
    ) -> ServiceResult<String> {
        let now = self.clock.now_naive();
        tx.insert_refresh_token(&session.id, token.hash(), now, self.refresh_expiry(session))
            .await
            .context("storing the refresh token")?;
        Ok(token.into_string())
    }

    /// When a refresh token issued now expires: never after its session's absolute cap.
    fn refresh_expiry(&self, session: &SessionRow) -> chrono::NaiveDateTime {
        (self.clock.now_naive() + span(self.config.jwt.refresh_lifetime)).min(session.expires_at)
    }

    fn issue_access_token(&self, user: &UserRow, session_id: &SessionId) -> ServiceResult<String> {
        Ok(self
            .tokens
            .issue(user.id, &user.email, session_id, self.clock.now())
            .context("signing an access token")?)
    }

    async fn upgrade_hash(
        &self,
        user: &UserRow,
        old_hash: &str,
        password: &LoginPassword,
    ) -> ServiceResult<()> {
        let new_hash = self.hasher.hash(password.secret()).await?;
        let mut conn = self.connection().await?;
        conn.queries()
            .upgrade_password_hash(user.id, old_hash, &new_hash)
            .await
            .context("upgrading the password hash")?;
        Ok(())
    }
}
