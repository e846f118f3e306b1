//! Who is calling, and whether a call admits them. Each call states what it requires once, as
//! an [`Access`] value ("a signed-in user", "staff, or a service with `users:write`"), and
//! [`Services::require`] answers with the [`Principal`] it admitted or the refusal.

use std::convert::Infallible;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::{
    auth::{AccessClaims, BearerToken, ClientCertificate, Scope, TokenError},
    clock::span,
    domain::{Aal, Actor, AuthMethods, User},
    error::{ServiceError, ServiceResult},
    services::Services,
};

/// What a caller presented: a bearer token (a user's access token or a service token) and,
/// over TLS, the client certificate the handshake verified.
#[derive(Debug, Default)]
pub struct Credentials {
    /// `authorization: Bearer`.
    pub bearer: Option<BearerToken>,
    /// The verified client certificate.
    pub certificate: Option<ClientCertificate>,
}

/// The user behind a verified bearer token, the token's claims, and how its session was
/// authenticated as the session records it now (a `StepUp` raises it for every token).
#[derive(Debug)]
pub struct Authenticated {
    /// The account, as it is now.
    pub user: User,
    /// The claims of the presented token.
    pub claims: AccessClaims,
    /// The kinds of factor the session has used.
    pub methods: AuthMethods,
    /// When its user last proved one.
    pub auth_time: DateTime<Utc>,
}

/// What a call requires of its caller.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// The scope a service's credential must allow; `None`: services are not admitted.
    service_scope: Option<Scope>,
    /// Which signed-in users are admitted.
    users: Users,
    /// Whether a user whose account has a second factor must have proven one in this session
    /// within `STEP_UP_MAX_AGE`.
    fresh_second_factor: bool,
}

/// The signed-in users a call admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Users {
    /// None: the call is for services.
    Nobody,
    /// Anyone with a live access token.
    Anyone,
    /// Staff users and superusers.
    Staff,
}

impl Access {
    /// A signed-in user: a live access token.
    pub const SIGNED_IN: Self = Self {
        service_scope: None,
        users: Users::Anyone,
        fresh_second_factor: false,
    };

    /// The same, and for an account with a second factor, one proven in the caller's session
    /// within `STEP_UP_MAX_AGE` (`aal2`, recently): what changing the account asks.
    #[must_use]
    pub const fn with_fresh_second_factor(self) -> Self {
        Self {
            fresh_second_factor: true,
            ..self
        }
    }

    /// An administrator: a signed-in staff user, or a service whose credential allows `scope`.
    #[must_use]
    pub const fn staff_or_service(scope: Scope) -> Self {
        Self {
            service_scope: Some(scope),
            users: Users::Staff,
            fresh_second_factor: false,
        }
    }

    /// Any signed-in user, or a service whose credential allows `scope`; the call decides
    /// what a user who is not staff may do.
    #[must_use]
    pub const fn user_or_service(scope: Scope) -> Self {
        Self {
            service_scope: Some(scope),
            users: Users::Anyone,
            fresh_second_factor: false,
        }
    }

    /// A service whose credential allows `scope`; an end-user token is no credential here.
    #[must_use]
    pub const fn service(scope: Scope) -> Self {
        Self {
            service_scope: Some(scope),
            users: Users::Nobody,
            fresh_second_factor: false,
        }
    }
}

/// Whom a call admitted.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per call, moved once; boxing would allocate on every authenticated call"
)]
pub enum Principal {
    /// A signed-in user.
    User(Authenticated),
    /// A backend service, by the name its credential gives.
    Service(String),
}

impl Principal {
    /// The actor, as the audit trail names it.
    #[must_use]
    pub fn actor(&self) -> Actor {
        match self {
            Self::User(me) => Actor::User(me.user.id),
            Self::Service(name) => Actor::Service(name.clone()),
        }
    }

    /// Whether it is staff: a staff user, a superuser, or a service.
    #[must_use]
    pub fn is_staff(&self) -> bool {
        match self {
            Self::User(me) => me.user.is_staff || me.user.is_superuser,
            Self::Service(_) => true,
        }
    }

    /// Whether it may change superusers and grant the flag: a superuser or a service.
    #[must_use]
    pub fn governs_superusers(&self) -> bool {
        match self {
            Self::User(me) => me.user.is_superuser,
            Self::Service(_) => true,
        }
    }
}

impl TryFrom<Principal> for Authenticated {
    type Error = ServiceError;

    /// The signed-in user; a service is refused (the call acts on its caller's account).
    fn try_from(principal: Principal) -> ServiceResult<Self> {
        match principal {
            Principal::User(me) => Ok(me),
            Principal::Service(_) => Err(ServiceError::PermissionDenied),
        }
    }
}

impl From<Infallible> for ServiceError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl Services {
    /// The caller `credentials` prove, if `access` admits them: a service by its token or
    /// client certificate first, where services are admitted, else the user of the bearer
    /// token. `G` is what the call works with: the [`Principal`], or the [`Authenticated`]
    /// user of a call on one's own account.
    ///
    /// # Errors
    /// `Unauthenticated` without a credential the call admits (an end-user token is none
    /// where only services are), those of [`Services::authenticate`] for a bad user token,
    /// `PermissionDenied` for a service without the scope or a user who is not staff where
    /// staff is required.
    pub async fn require<G>(&self, credentials: &Credentials, access: Access) -> ServiceResult<G>
    where
        G: TryFrom<Principal>,
        ServiceError: From<G::Error>,
    {
        let principal = self.principal(credentials, access).await?;
        Ok(G::try_from(principal)?)
    }

    async fn principal(
        &self,
        credentials: &Credentials,
        access: Access,
    ) -> ServiceResult<Principal> {
        if let Some(scope) = access.service_scope {
            let registry = &self.service_credentials;
            let service = credentials
                .bearer
                .as_ref()
                .and_then(|token| registry.find_token(token.expose()))
                .or_else(|| {
                    let certificate = credentials.certificate.as_ref()?;
                    registry.find_certificate_holder(certificate)
                });
            if let Some(service) = service {
                if !service.allows(scope) {
                    return Err(ServiceError::PermissionDenied);
                }
                tracing::debug!(service.name = %service.name, "service call authorized");
                return Ok(Principal::Service(service.name.clone()));
            }
        }
        if access.users == Users::Nobody {
            return Err(ServiceError::Unauthenticated);
        }
        let me = self.authenticate(credentials.bearer.as_ref()).await?;
        if access.users == Users::Staff && !(me.user.is_staff || me.user.is_superuser) {
            return Err(ServiceError::PermissionDenied);
        }
        if access.fresh_second_factor && !self.has_fresh_second_factor(&me).await? {
            return Err(ServiceError::StepUpRequired);
        }
        Ok(Principal::User(me))
    }

    /// Whether the caller's session meets a step-up: its account has no second factor, or
    /// the session proved one (`aal2`) within `STEP_UP_MAX_AGE`.
    async fn has_fresh_second_factor(&self, me: &Authenticated) -> ServiceResult<bool> {
        let recent = self.clock.now() - me.auth_time <= span(self.config.step_up_max_age);
        if me.methods.aal() == Aal::Aal2 && recent {
            return Ok(true);
        }
        Ok(self.second_factor_kinds(me.user.id).await?.is_empty())
    }

    /// Verifies a bearer access token and that its session is still live.
    ///
    /// # Errors
    /// `Unauthenticated` (no token), `TokenInvalid`, `TokenExpired`, `SessionRevoked`.
    pub async fn authenticate(&self, bearer: Option<&BearerToken>) -> ServiceResult<Authenticated> {
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
        let (session, user) = bearer
            .filter(|(session, user)| {
                session.revoked_at.is_none()
                    && session.expires_at > now.naive_utc()
                    && user.id == verified.user_id
                    && user.is_active
            })
            .ok_or(ServiceError::SessionRevoked)?;
        Ok(Authenticated {
            user: self.to_user(&user),
            claims: verified.claims,
            methods: AuthMethods::from_stored(&session.methods),
            auth_time: session.authenticated_at().and_utc(),
        })
    }
}
