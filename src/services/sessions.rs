//! Sessions: signing in with a password, refresh-token rotation with reuse detection (and
//! the one-time exchange of a refresh token Django issued), and signing out.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    Caller, Credentials, Services,
    core::{
        access::{Access, Authenticated},
        audit::AuditEntry,
        effects::Tx,
        limits::IpBudget,
        second_factor::SecondFactorProof,
        sign_in::{FirstFactor, SignInOutcome, SignedIn, TokenPair},
    },
};
use crate::{
    auth::{ChallengeToken, DjangoTokenError, RefreshToken, Verification},
    clock::span,
    domain::{
        Actor, AuditKind, AuditOutcome, AuthMethod, AuthMethods, Email, LoginPassword,
        RefreshTokenHash, SessionId,
    },
    email::Notice,
    error::{ServiceError, ServiceResult},
    storage::{SessionRow, UserRow},
};

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
    ) -> ServiceResult<SignInOutcome> {
        self.spend_ip_budget(&caller, IpBudget::Login, self.clock.now())
            .await?;
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
        // The session starts now, after the password check: revocations logged while it ran
        // are older than its tokens.
        let now = self.clock.now();
        let outcome = self.start_session(&user, &caller, signed_in, now).await?;
        tracing::info!(user.id = %user.id, "password checked");
        Ok(outcome)
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
    ) -> ServiceResult<SignInOutcome> {
        let now = self.clock.now();
        self.spend_ip_budget(&caller, IpBudget::Refresh, now)
            .await?;
        if self.django_refresh.accepts_now(presented.expose(), now) {
            return self
                .exchange_django_refresh(&caller, presented.expose(), now)
                .await;
        }
        let token_hash = presented.hash();
        let rotation = self
            .transaction_at(&caller, now, async |tx| {
                let now = tx.now_naive();
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
                    if self.is_retry(tx, &token_hash, &successor).await? {
                        // The same successor again, with a fresh access token: a client
                        // whose answer was lost is not signed out, and concurrent
                        // refreshes with one token all end in one new token.
                        return self.reissue(tx, &session_id, successor).await;
                    }
                    let revoked = tx
                        .revoke_session(&session_id, now)
                        .await
                        .context("revoking a reused session")?;
                    if revoked {
                        Self::notify_session_revoked(tx, &session_id).await?;
                    }
                    tracing::warn!(session.id = %session_id, "refresh token reused; session revoked");
                    return Ok(Rotation::Refused(ServiceError::TokenReused));
                };
                let (spent, continued) = spent;
                if spent.expires_at <= now {
                    return Ok(Rotation::Refused(ServiceError::TokenExpired));
                }
                let (session, user) = match Self::still_refreshable(tx, continued).await? {
                    Ok(live) => live,
                    Err(refusal) => return Ok(Rotation::Refused(refusal)),
                };
                tx.record_refresh(
                    &session.id,
                    successor.hash(),
                    now,
                    self.refresh_expiry(&session, now),
                )
                .await
                .context("recording the refresh")?;
                let access = self.issue_access_token(&user, &session, tx.now())?;
                Ok::<_, ServiceError>(Rotation::Rotated(TokenPair {
                    access,
                    refresh: successor.into_string(),
                }))
            })
            .await?;
        // Refusals are decided inside the transaction but returned after it commits, so a
        // reuse's revocation (and its notice) is kept.
        match rotation {
            Rotation::Rotated(pair) => Ok(SignInOutcome::Session(pair)),
            Rotation::Refused(error) => Err(error),
        }
    }

    /// Finishes a sign-in with a second factor: the `mfa_token` a first factor answered (used
    /// once, within `MFA_CHALLENGE_TIMEOUT`) and a code of an authenticator app or a recovery
    /// code, the guess counted before it is checked. The session's level is `aal2`.
    ///
    /// # Errors
    /// `TokenInvalid` (unknown or used token), `TokenExpired`, `RateLimited`,
    /// `TooManyAttempts`, `OtpInvalid`, `InvalidCredentials` (the password changed since the
    /// first factor), `AccountDisabled`.
    #[tracing::instrument(skip_all)]
    pub async fn verify_second_factor(
        &self,
        caller: Caller,
        token: ChallengeToken,
        proof: SecondFactorProof,
    ) -> ServiceResult<TokenPair> {
        let now = self.clock.now();
        let token_hash = token.hash();
        let challenge = self
            .connection()
            .await?
            .queries()
            .mfa_challenge(&token_hash)
            .await
            .context("loading the challenge")?
            .filter(|challenge| challenge.used_at.is_none())
            .ok_or(ServiceError::TokenInvalid)?;
        if challenge.expires_at <= now.naive_utc() {
            return Err(ServiceError::TokenExpired);
        }
        self.spend_second_factor_guess(challenge.user_id, &token_hash, now.naive_utc())
            .await?;
        let user = self
            .user_by_id(challenge.user_id)
            .await?
            .ok_or(ServiceError::TokenInvalid)?;
        if !user.is_active {
            return Err(ServiceError::AccountDisabled);
        }
        let first = FirstFactor {
            method: AuthMethod::from_stored(&challenge.first_factor)
                .ok_or(ServiceError::TokenInvalid)?,
            password_changed_at: challenge.password_changed_at,
            attempt: None,
        };
        let signed_in = self
            .transaction_at(&caller, now, async |tx| {
                let second = tx.prove_second_factor(&user, &proof).await?;
                let now = tx.now_naive();
                if !tx
                    .use_mfa_challenge(&token_hash, now)
                    .await
                    .context("using the challenge")?
                {
                    return Err(ServiceError::TokenInvalid);
                }
                let methods = AuthMethods::of(&[first.method, second]);
                tx.open_session(&user, first, &methods).await
            })
            .await;
        let pair = self
            .told_of_counter_going_back(&caller, user.id, signed_in)
            .await?;
        tracing::info!(user.id = %user.id, "signed in with a second factor");
        Ok(pair)
    }

    /// Whether a spent token is presented again within the reuse grace while the successor
    /// its spending issued is still unspent.
    async fn is_retry(
        &self,
        tx: &mut Tx<'_, '_>,
        spent: &RefreshTokenHash,
        successor: &RefreshToken,
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
        let within_grace = spent_at.is_some_and(|at| tx.now_naive() - at < span(grace));
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
        tx: &mut Tx<'_, '_>,
        session_id: &SessionId,
        successor: RefreshToken,
    ) -> ServiceResult<Rotation> {
        let live = tx
            .session_with_user(session_id)
            .await
            .context("loading the session and its user")?;
        let (session, user) = match Self::still_refreshable(tx, live).await? {
            Ok(live) => live,
            Err(refusal) => return Ok(Rotation::Refused(refusal)),
        };
        let access = self.issue_access_token(&user, &session, tx.now())?;
        tracing::info!(session.id = %session.id, "a retried refresh got the same successor");
        Ok(Rotation::Rotated(TokenPair {
            access,
            refresh: successor.into_string(),
        }))
    }

    /// The session a refresh continues and its user, or why it cannot: the session is
    /// revoked or past its absolute end, or its user is disabled (which ends it here).
    async fn still_refreshable(
        tx: &mut Tx<'_, '_>,
        live: Option<(SessionRow, UserRow)>,
    ) -> ServiceResult<Result<(SessionRow, UserRow), ServiceError>> {
        let Some((session, user)) = live.filter(|(session, _)| session.revoked_at.is_none()) else {
            return Ok(Err(ServiceError::SessionRevoked));
        };
        let now = tx.now_naive();
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
        tx: &mut Tx<'_, '_>,
        session_id: &SessionId,
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
            tx.notify(Notice::SessionRevoked, &owner).await?;
        }
        tx.audit(AuditEntry {
            kind: AuditKind::RefreshReuse,
            outcome: AuditOutcome::Failure,
            actor: Actor::Anonymous,
            subject: Some(session.user_id),
            detail: format!("session={session_id} revoked"),
        })
        .await
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
        self.transaction(caller, async |tx| tx.audit(entry).await)
            .await
    }

    /// Raises the caller's session with a second factor (a TOTP or recovery code, the guess
    /// counted before it is checked): the session becomes `aal2` from now, so the calls a
    /// step-up guards work for `STEP_UP_MAX_AGE`. Answers a new access token; the session's
    /// refresh token carries on.
    ///
    /// # Errors
    /// Those of [`Services::require`], `RateLimited`, `TooManyAttempts`, `OtpInvalid`.
    #[tracing::instrument(skip_all)]
    pub async fn step_up(
        &self,
        caller: Caller,
        credentials: Credentials,
        proof: SecondFactorProof,
    ) -> ServiceResult<String> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let session_id =
            SessionId::parse(&me.claims.sid).map_err(|_| ServiceError::TokenInvalid)?;
        let now = self.clock.now();
        self.spend_second_factor_guess(me.user.id, session_id.as_str(), now.naive_utc())
            .await?;
        let raised = self
            .transaction_at(&caller, now, async |tx| {
                let (session, user) = tx
                    .session_with_user(&session_id)
                    .await
                    .context("loading the session")?
                    .ok_or(ServiceError::SessionRevoked)?;
                let second = tx.prove_second_factor(&user, &proof).await?;
                let methods = AuthMethods::from_stored(&session.methods).with(second);
                let now = tx.now_naive();
                if !tx
                    .raise_session(&session.id, &methods.to_stored(), now)
                    .await
                    .context("raising the session")?
                {
                    return Err(ServiceError::SessionRevoked);
                }
                let entry = AuditEntry::success(AuditKind::StepUp, Actor::User(user.id), user.id)
                    .detail(format!("session={} method={}", session.id, second.as_str()));
                tx.audit(entry).await?;
                let raised = SessionRow {
                    methods: methods.to_stored(),
                    auth_time: Some(now),
                    ..session
                };
                self.issue_access_token(&user, &raised, tx.now())
            })
            .await;
        let access = self
            .told_of_counter_going_back(&caller, me.user.id, raised)
            .await?;
        tracing::info!(user.id = %me.user.id, "session stepped up");
        Ok(access)
    }

    /// Exchanges a refresh token the Django deployment's simplejwt issued, once and within
    /// the configured window, for a session here.
    ///
    /// # Errors
    /// `TokenInvalid` (forged, not a refresh token, of a Django user the import did not
    /// create an account from, blacklisted in Django, or exchanged before), `TokenExpired`,
    /// `SessionRevoked` (a disabled account, or one whose sessions were ended here after the
    /// token was issued).
    async fn exchange_django_refresh(
        &self,
        caller: &Caller,
        token: &str,
        now: DateTime<Utc>,
    ) -> ServiceResult<SignInOutcome> {
        let refresh = self.django_refresh.check(token, now).map_err(|e| match e {
            DjangoTokenError::Invalid => ServiceError::TokenInvalid,
            DjangoTokenError::Expired => ServiceError::TokenExpired,
        })?;
        // Only the account created from that same Django user: an id the import skipped
        // may belong to someone else here.
        let imported = self
            .connection()
            .await?
            .queries()
            .account_imported_from(refresh.user_id)
            .await
            .context("finding the account imported from the token's user")?;
        let user = match imported {
            Some(id) => self.user_by_id(id).await?,
            None => None,
        }
        .ok_or(ServiceError::TokenInvalid)?;
        let ended_after_issue = user
            .sessions_ended_at
            .is_some_and(|ended| refresh.issued_at.naive_utc() < ended);
        if !user.is_active || ended_after_issue {
            return Err(ServiceError::SessionRevoked);
        }
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        if queries
            .is_django_refresh_blacklisted(&refresh.jti)
            .await
            .context("looking the token up in simplejwt's blacklist")?
        {
            return Err(ServiceError::TokenInvalid);
        }
        let first = queries
            .spend_django_refresh(&refresh.jti, user.id, now.naive_utc())
            .await
            .context("spending a Django refresh token")?;
        drop(conn);
        if !first {
            return Err(ServiceError::TokenInvalid);
        }
        let pair = self
            .start_session(&user, caller, SignedIn::DjangoRefresh, now)
            .await?;
        tracing::info!(user.id = %user.id, "a Django refresh token was exchanged");
        Ok(pair)
    }

    /// Ends the session a refresh token belongs to. As RFC 7009 asks, a token that is
    /// unknown, malformed or already spent answers the same: there is nothing left to end.
    ///
    /// # Errors
    /// Only when the database fails.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, caller: Caller, presented: RefreshToken) -> ServiceResult<()> {
        let token_hash = presented.hash();
        self.transaction(&caller, async |tx| {
            let now = tx.now_naive();
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
                tx.audit(entry).await?;
                tracing::info!(session.id = %session_id, "signed out");
            }
            Ok(())
        })
        .await
    }

    /// Ends every session of the bearer; returns how many were live.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    #[tracing::instrument(skip_all)]
    pub async fn logout_all(&self, caller: Caller, credentials: Credentials) -> ServiceResult<u64> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let me = me.user.id;
        let revoked = self
            .transaction(&caller, async |tx| {
                let now = tx.now_naive();
                let revoked = tx
                    .revoke_user_sessions(me, now)
                    .await
                    .context("revoking every session")?;
                let entry = AuditEntry::success(AuditKind::LogoutAll, Actor::User(me), me)
                    .detail(format!("sessions_revoked={revoked}"));
                tx.audit(entry).await?;
                Ok::<_, ServiceError>(revoked)
            })
            .await?;
        tracing::info!(user.id = %me, sessions = revoked, "signed out everywhere");
        Ok(u64::try_from(revoked).unwrap_or(u64::MAX))
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
