//! Wire to domain and back. Parsing happens here, at the edge; services never see raw strings
//! where a domain type exists.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use pbjson_types::Timestamp;
use tonic::Request;

use crate::{
    auth::{BearerToken, ChallengeToken, ClientCertificate, LinkToken, RefreshToken},
    domain::{
        AuditKind, AuditPageToken, DeviceName, Email, EmailPrefix, FactorId, FactorName, IpNet,
        LoginPassword, Otp, PageSize, PageToken, ParseError, Password, PersonName, RecoveryCode,
        SessionId, Uidb64, User, UserId, canonical_ip,
    },
    error::ServiceError,
    pb,
    services::{
        Authenticated, Caller, Credentials, GoogleCredential, SecondFactorProof, SignInOutcome,
        account_changes::Proof,
        accounts::Registration,
        admin::{AccountChanges, NewUserByAdmin, UserUpdate},
        audit::{AuditEvent, AuditQuery},
        devices::Device,
        email_sign_in::EmailSignInProof,
        factors::{DEFAULT_PASSKEY_NAME, DEFAULT_TOTP_NAME, Factor, TotpEnrollment},
        passkey_sign_in::PasskeyCeremonyFor,
        token_service::Revocation,
        users::UserQuery,
    },
};

type Parsed<T> = Result<T, ServiceError>;

/// Parses one field, naming it in the error.
fn field<T>(name: &'static str, parsed: Result<T, ParseError>) -> Parsed<T> {
    parsed.map_err(|e| ServiceError::invalid(name, &e))
}

/// The `email` field common to many requests.
pub(crate) fn email(raw: &str) -> Parsed<Email> {
    field("email", Email::parse(raw))
}

/// A registration.
pub(crate) fn registration(request: pb::RegisterRequest) -> Parsed<Registration> {
    Ok(Registration {
        email: email(&request.email)?,
        password: field("password", Password::parse(&request.password))?,
        first_name: field("first_name", PersonName::parse(&request.first_name))?,
        last_name: field("last_name", PersonName::parse(&request.last_name))?,
    })
}

/// The `otp` field of a request.
pub(crate) fn otp(raw: &str) -> Parsed<Otp> {
    field("otp", Otp::parse(raw))
}

/// The name of a new factor.
pub(crate) fn factor_name(raw: &str) -> Parsed<FactorName> {
    field("name", FactorName::parse(raw, DEFAULT_TOTP_NAME))
}

/// The name of a new passkey.
pub(crate) fn passkey_name(raw: &str) -> Parsed<FactorName> {
    field("name", FactorName::parse(raw, DEFAULT_PASSKEY_NAME))
}

/// A factor and the new name its owner gives it.
pub(crate) fn factor_rename(request: &pb::RenameFactorRequest) -> Parsed<(FactorId, FactorName)> {
    Ok((
        factor_id(&request.factor_id)?,
        field("name", FactorName::parse_given(&request.name))?,
    ))
}

/// A factor id.
pub(crate) fn factor_id(raw: &str) -> Parsed<FactorId> {
    field("factor_id", FactorId::parse(raw))
}

/// A pending factor and a code of it.
pub(crate) fn factor_code(request: &pb::ConfirmTotpEnrollmentRequest) -> Parsed<(FactorId, Otp)> {
    Ok((
        field("factor_id", FactorId::parse(&request.factor_id))?,
        field("code", Otp::parse(&request.code))?,
    ))
}

/// An address and the code mailed to it.
pub(crate) fn otp_verification(request: &pb::VerifyOtpRequest) -> Parsed<(Email, Otp)> {
    Ok((
        email(&request.email)?,
        field("otp", Otp::parse(&request.otp))?,
    ))
}

/// The two path segments of an emailed link.
pub(crate) fn link(uidb64: &str, token: &str) -> Parsed<(Uidb64, LinkToken)> {
    Ok((
        field("uidb64", Uidb64::parse(uidb64))?,
        LinkToken::from_client(token),
    ))
}

/// A sign-in.
pub(crate) fn credentials(request: &pb::LoginRequest) -> Parsed<(Email, LoginPassword)> {
    Ok((
        email(&request.email)?,
        field("password", LoginPassword::parse(&request.password))?,
    ))
}

/// A refresh token as the client holds it.
/// Any non-empty value is taken as it is: one that is unknown, spent or malformed is
/// answered like any other token that opens nothing.
pub(crate) fn refresh_token(raw: &str) -> Parsed<RefreshToken> {
    if raw.trim().is_empty() {
        return Err(ServiceError::invalid(
            "refresh",
            &ParseError::new("is required"),
        ));
    }
    Ok(RefreshToken::from_client(raw))
}

/// A reset link and the new password.
pub(crate) fn password_reset(
    request: &pb::PasswordResetConfirmRequest,
) -> Parsed<(Uidb64, LinkToken, Password)> {
    let (uid, token) = link(&request.uidb64, &request.token)?;
    let password = field("new_password", Password::parse(&request.new_password))?;
    Ok((uid, token, password))
}

/// The page asked for.
pub(crate) fn page(request: &pb::ListUsersRequest) -> Parsed<(PageSize, PageToken)> {
    Ok((
        field("page_size", PageSize::parse(request.page_size))?,
        field("page_token", PageToken::parse(&request.page_token))?,
    ))
}

/// A user id.
pub(crate) fn user_id(raw: i64) -> Parsed<UserId> {
    field("id", UserId::parse(raw))
}

/// Exactly one of `access_token` and `id_token`.
pub(crate) fn google_credential(request: &pb::GoogleLoginRequest) -> Parsed<GoogleCredential> {
    let fields = ("access_token", "id_token");
    google_token(&request.access_token, &request.id_token, fields)?.ok_or_else(|| {
        ServiceError::InvalidArgument {
            field: "access_token",
            reason: "or id_token is required".into(),
        }
    })
}

/// At most one of a Google access token and ID token, named on the wire by `fields`.
fn google_token(
    access_token: &str,
    id_token: &str,
    fields: (&'static str, &'static str),
) -> Parsed<Option<GoogleCredential>> {
    let access_token = access_token.trim().to_owned();
    let id_token = id_token.trim().to_owned();
    match (access_token.is_empty(), id_token.is_empty()) {
        (false, true) => Ok(Some(GoogleCredential::AccessToken(access_token))),
        (true, false) => Ok(Some(GoogleCredential::IdToken(id_token))),
        (true, true) => Ok(None),
        (false, false) => Err(ServiceError::InvalidArgument {
            field: fields.1,
            reason: format!("must not be sent together with {}", fields.0),
        }),
    }
}

/// The proof of a sensitive change: the password in `password_field`, or else exactly one
/// Google credential.
fn proof(
    password_field: &'static str,
    password: &str,
    google_access_token: &str,
    google_id_token: &str,
) -> Parsed<Proof> {
    let fields = ("google_access_token", "google_id_token");
    let google = google_token(google_access_token, google_id_token, fields)?;
    match (password.is_empty(), google) {
        (false, None) => Ok(Proof::Password(field(
            password_field,
            LoginPassword::parse(password),
        )?)),
        (true, Some(credential)) => Ok(Proof::Google(credential)),
        (false, Some(_)) => Err(ServiceError::InvalidArgument {
            field: password_field,
            reason: "must not be sent together with a Google credential".into(),
        }),
        (true, None) => Err(ServiceError::InvalidArgument {
            field: password_field,
            reason: "is required (or a Google credential, for an account without a password)"
                .into(),
        }),
    }
}

/// A password change: the proof and the new password.
pub(crate) fn password_change(request: &pb::ChangePasswordRequest) -> Parsed<(Proof, Password)> {
    let proof = proof(
        "current_password",
        &request.current_password,
        &request.google_access_token,
        &request.google_id_token,
    )?;
    let new_password = field("new_password", Password::parse(&request.new_password))?;
    Ok((proof, new_password))
}

/// An address change: the new address and the proof.
pub(crate) fn email_change(request: &pb::ChangeEmailRequest) -> Parsed<(Email, Proof)> {
    let new_email = field("new_email", Email::parse(&request.new_email))?;
    let proof = proof(
        "password",
        &request.password,
        &request.google_access_token,
        &request.google_id_token,
    )?;
    Ok((new_email, proof))
}

/// The proof of an account deletion.
pub(crate) fn account_deletion(request: &pb::DeleteAccountRequest) -> Parsed<Proof> {
    proof(
        "password",
        &request.password,
        &request.google_access_token,
        &request.google_id_token,
    )
}

/// An account a trusted caller creates.
pub(crate) fn new_user_by_admin(request: &pb::CreateUserRequest) -> Parsed<NewUserByAdmin> {
    let password = if request.password.is_empty() {
        None
    } else {
        Some(field("password", Password::parse(&request.password))?)
    };
    Ok(NewUserByAdmin {
        email: email(&request.email)?,
        password,
        first_name: field("first_name", PersonName::parse(&request.first_name))?,
        last_name: field("last_name", PersonName::parse(&request.last_name))?,
        is_staff: request.is_staff,
        send_password_link: request.send_password_link,
    })
}

/// The fields of an update its mask names (AIP-134); an empty mask or an unknown path is
/// refused rather than guessed at.
pub(crate) fn user_update(request: &pb::UpdateUserRequest) -> Parsed<(UserId, UserUpdate)> {
    let id = user_id(request.id)?;
    let paths = request
        .update_mask
        .as_ref()
        .map(|mask| mask.paths.as_slice())
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(ServiceError::InvalidArgument {
            field: "update_mask",
            reason: "must name the fields to change".into(),
        });
    }
    let mut changes = AccountChanges::default();
    for path in paths {
        match path.trim() {
            "first_name" => {
                changes.first_name =
                    Some(field("first_name", PersonName::parse(&request.first_name))?);
            }
            "last_name" => {
                changes.last_name =
                    Some(field("last_name", PersonName::parse(&request.last_name))?);
            }
            "is_active" => changes.is_active = Some(request.is_active),
            "is_staff" => changes.is_staff = Some(request.is_staff),
            "is_superuser" => changes.is_superuser = Some(request.is_superuser),
            other => {
                return Err(ServiceError::InvalidArgument {
                    field: "update_mask",
                    reason: format!(
                        "names {other:?}, which cannot be changed (first_name, last_name, \
                         is_active, is_staff, is_superuser can)"
                    ),
                });
            }
        }
    }
    Ok((
        id,
        UserUpdate {
            changes,
            etag: etag(&request.etag),
        },
    ))
}

/// The `etag` of a deletion, if sent.
pub(crate) fn etag(raw: &str) -> Option<String> {
    Some(raw.trim().to_owned()).filter(|etag| !etag.is_empty())
}

/// The filters of a user listing.
pub(crate) fn user_filter(request: &pb::ListUsersRequest) -> Parsed<UserQuery> {
    Ok(UserQuery {
        email_prefix: field("email_prefix", EmailPrefix::parse(&request.email_prefix))?,
        is_verified: request.is_verified,
        is_active: request.is_active,
        is_staff: request.is_staff,
    })
}

/// The filters and page of an audit listing.
pub(crate) fn audit_query(
    request: &pb::ListAuditEventsRequest,
) -> Parsed<(AuditQuery, PageSize, AuditPageToken)> {
    let subject = match request.user_id {
        0 => None,
        id => Some(field("user_id", UserId::parse(id))?),
    };
    let instant = |name: &'static str, at: Option<&Timestamp>| -> Parsed<Option<DateTime<Utc>>> {
        at.map(|at| {
            let nanos = u32::try_from(at.nanos).unwrap_or(u32::MAX);
            DateTime::from_timestamp(at.seconds, nanos).ok_or(ServiceError::InvalidArgument {
                field: name,
                reason: "is not a valid instant".into(),
            })
        })
        .transpose()
    };
    let query = AuditQuery {
        subject,
        kind: field("kind", AuditKind::parse(&request.kind))?,
        since: instant("since", request.since.as_ref())?,
        until: instant("until", request.until.as_ref())?,
    };
    Ok((
        query,
        field("page_size", PageSize::parse(request.page_size))?,
        field("page_token", AuditPageToken::parse(&request.page_token))?,
    ))
}

/// The wire form of an audit event.
pub(crate) fn audit_event(event: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id,
        occurred_at: Some(timestamp(event.occurred_at)),
        kind: event.kind,
        outcome: event.outcome,
        actor: event.actor,
        user_id: event.subject.map_or(0, UserId::get),
        ip: event.client_ip.unwrap_or_default(),
        user_agent: event.user_agent,
        detail: event.detail,
    }
}

/// What the caller presented to prove who it is: its bearer token and client certificate.
pub(crate) fn access_credentials<T>(request: &Request<T>) -> Credentials {
    Credentials {
        bearer: bearer(request),
        certificate: client_certificate(request),
    }
}

/// The bearer token of `authorization` metadata, if any.
pub(crate) fn bearer<T>(request: &Request<T>) -> Option<BearerToken> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    BearerToken::from_authorization(value)
}

/// The leaf certificate the caller's TLS connection presented, which the handshake verified
/// against `GRPC_TLS_CLIENT_CA_FILE`.
pub(crate) fn client_certificate<T>(request: &Request<T>) -> Option<ClientCertificate> {
    let chain = request.peer_certs()?;
    ClientCertificate::from_der(chain.first()?.as_ref())
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address of the `x-forwarded-for` chain (every value of the header, in order) that is not
/// a trusted proxy. Addresses a client wrote itself stand left of that, so they never count.
fn client_ip<T>(request: &Request<T>, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let peer = canonical_ip(request.remote_addr()?.ip());
    if !trusted(peer) {
        return Some(peer);
    }
    let chain: Vec<&str> = request
        .metadata()
        .get_all("x-forwarded-for")
        .iter()
        // Hop by hop, so bytes a client wrote on the left cannot void what proxies appended.
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|hop| std::str::from_utf8(hop).unwrap_or_default().trim())
        .collect();
    let mut client = peer;
    for hop in chain.iter().rev() {
        // A hop that is not an address ends what can be believed.
        let Ok(hop) = hop.parse::<IpAddr>().map(canonical_ip) else {
            break;
        };
        client = hop;
        if !trusted(hop) {
            break;
        }
    }
    Some(client)
}

/// Who is calling: their address (see `client_ip`) and the device they describe, by the
/// `x-device-name` a client sets, else its `user-agent`.
pub(crate) fn caller<T>(request: &Request<T>, trusted_proxies: &[IpNet]) -> Caller {
    let metadata = request.metadata();
    let described = ["x-device-name", "user-agent"]
        .into_iter()
        .filter_map(|key| metadata.get(key)?.to_str().ok())
        .map(DeviceName::from_client)
        .find(|device| !device.as_str().is_empty());
    Caller {
        ip: client_ip(request, trusted_proxies),
        device: described.unwrap_or_default(),
    }
}

/// The token an introspection asks about; an empty one is simply not live.
pub(crate) fn introspected_token(request: &pb::IntrospectTokenRequest) -> Option<BearerToken> {
    BearerToken::from_token(&request.token)
}

/// Where a revocation stream resumes: after the cursor it was given (from the start when empty).
pub(crate) fn revocation_cursor(raw: &str) -> Parsed<i64> {
    if raw.is_empty() {
        return Ok(0);
    }
    raw.parse::<i64>()
        .ok()
        .filter(|cursor| *cursor > 0)
        .ok_or_else(|| ServiceError::InvalidArgument {
            field: "cursor",
            reason: "is not a cursor from this stream".into(),
        })
}

/// The wire form of an introspection.
pub(crate) fn introspection(live: Option<Authenticated>) -> pb::IntrospectTokenResponse {
    let Some(live) = live else {
        return pb::IntrospectTokenResponse::default();
    };
    let claims = live.claims;
    pb::IntrospectTokenResponse {
        active: true,
        sub: claims.sub,
        sid: claims.sid,
        email: claims.email,
        iss: claims.iss,
        aud: claims.aud,
        jti: claims.jti,
        iat: claims.iat,
        exp: claims.exp,
        token_type: claims.token_type,
        user: Some(user(live.user)),
        aal: claims.aal,
        amr: claims.amr,
        auth_time: claims.auth_time,
    }
}

/// The wire form of one published key.
pub(crate) fn json_web_key(jwk: &serde_json::Value) -> pb::JsonWebKey {
    let field = |name: &str| jwk[name].as_str().unwrap_or_default().to_owned();
    pb::JsonWebKey {
        kty: field("kty"),
        crv: field("crv"),
        x: field("x"),
        kid: field("kid"),
        alg: field("alg"),
        r#use: field("use"),
    }
}

/// The wire form of a revocation.
pub(crate) fn revocation(revocation: Revocation) -> pb::WatchRevocationsResponse {
    use pb::watch_revocations_response::Revoked;
    match revocation {
        Revocation::Session { cursor, session_id } => pb::WatchRevocationsResponse {
            cursor: cursor.to_string(),
            revoked: Some(Revoked::SessionId(session_id.as_str().to_owned())),
            caught_up: false,
        },
        Revocation::User {
            cursor,
            user_id,
            not_valid_before,
        } => pb::WatchRevocationsResponse {
            cursor: cursor.to_string(),
            revoked: Some(Revoked::User(pb::UserNotValidBefore {
                user_id: user_id.get(),
                not_valid_before: not_valid_before.timestamp(),
            })),
            caught_up: false,
        },
    }
}

/// The message that says a revocation stream is caught up at `cursor`.
pub(crate) fn caught_up(cursor: i64) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        cursor: if cursor > 0 {
            cursor.to_string()
        } else {
            String::new()
        },
        revoked: None,
        caught_up: true,
    }
}

/// A session id from a request.
pub(crate) fn session_id(raw: &str) -> Parsed<SessionId> {
    SessionId::parse(raw.trim()).map_err(|e| ServiceError::InvalidArgument {
        field: "session_id",
        reason: e.reason().to_owned(),
    })
}

/// The wire form of a device's session.
pub(crate) fn session(device: Device) -> pb::Session {
    pb::Session {
        id: device.session_id.as_str().to_owned(),
        device: device.device.as_str().to_owned(),
        ip: device.ip.unwrap_or_default(),
        created_at: Some(timestamp(device.created_at)),
        last_refreshed_at: device.last_refreshed_at.map(timestamp),
        expires_at: Some(timestamp(device.expires_at)),
        current: device.current,
    }
}

/// The wire form of a first factor's outcome: the tokens, or the challenge of a second factor.
pub(crate) fn sign_in(outcome: SignInOutcome) -> (String, String, Option<pb::MfaRequired>) {
    match outcome {
        SignInOutcome::Session(pair) => (pair.access, pair.refresh, None),
        SignInOutcome::SecondFactorRequired(challenge) => (
            String::new(),
            String::new(),
            Some(pb::MfaRequired {
                mfa_token: challenge.mfa_token,
                factors: challenge
                    .factors
                    .into_iter()
                    .map(|kind| kind.as_str().to_owned())
                    .collect(),
                expires_at: Some(timestamp(challenge.expires_at)),
            }),
        ),
    }
}

/// An `mfa_token` and exactly one second factor.
pub(crate) fn second_factor(
    request: &pb::VerifySecondFactorRequest,
) -> Parsed<(ChallengeToken, SecondFactorProof)> {
    if request.mfa_token.trim().is_empty() {
        return Err(ServiceError::InvalidArgument {
            field: "mfa_token",
            reason: "is required".into(),
        });
    }
    let token = ChallengeToken::from_client(&request.mfa_token);
    let proof = second_factor_proof(
        &request.totp_code,
        &request.recovery_code,
        request.passkey.as_ref(),
    )?;
    Ok((token, proof))
}

/// Whom a passkey ceremony is for: an address, any discoverable passkey, a sign-in's
/// challenge, or (with the caller's access token) a step-up.
pub(crate) fn passkey_ceremony_for(
    request: &Request<pb::StartPasskeySignInRequest>,
) -> Parsed<PasskeyCeremonyFor> {
    let message = request.get_ref();
    let (email_given, token) = (message.email.trim(), message.mfa_token.trim());
    match (
        email_given.is_empty(),
        token.is_empty(),
        message.for_step_up,
    ) {
        (true, true, false) => Ok(PasskeyCeremonyFor::AnyDiscoverable),
        (false, true, false) => Ok(PasskeyCeremonyFor::Account(email(email_given)?)),
        (true, false, false) => Ok(PasskeyCeremonyFor::Challenge(ChallengeToken::from_client(
            token,
        ))),
        (true, true, true) => Ok(PasskeyCeremonyFor::StepUp(access_credentials(request))),
        _ => Err(ServiceError::InvalidArgument {
            field: "email",
            reason: "send at most one of email, mfa_token and for_step_up".into(),
        }),
    }
}

/// What the sign-in email gave: the address with its code, or the link's token alone.
pub(crate) fn email_sign_in_proof(
    request: &pb::FinishEmailSignInRequest,
) -> Parsed<EmailSignInProof> {
    let token = request.token.trim();
    if token.is_empty() {
        return Ok(EmailSignInProof::Code {
            email: email(&request.email)?,
            code: field("code", Otp::parse(&request.code))?,
        });
    }
    if !request.email.trim().is_empty() || !request.code.trim().is_empty() {
        return Err(ServiceError::InvalidArgument {
            field: "token",
            reason: "send either email and code, or token alone".into(),
        });
    }
    Ok(EmailSignInProof::Link(ChallengeToken::from_client(token)))
}

/// Exactly one second factor: a TOTP code, a recovery code or a passkey's answer.
pub(crate) fn second_factor_proof(
    totp_code: &str,
    recovery_code: &str,
    passkey: Option<&pb::PasskeyAnswer>,
) -> Parsed<SecondFactorProof> {
    let proof = match (totp_code.trim(), recovery_code.trim(), passkey) {
        (code, "", None) if !code.is_empty() => {
            SecondFactorProof::Totp(field("totp_code", Otp::parse(code))?)
        }
        ("", code, None) if !code.is_empty() => {
            SecondFactorProof::RecoveryCode(field("recovery_code", RecoveryCode::parse(code))?)
        }
        ("", "", Some(answer)) => SecondFactorProof::Passkey {
            ceremony_id: ceremony_id(&answer.ceremony_id)?,
            answer: browser_json("passkey", answer.credential.as_ref())?,
        },
        _ => {
            return Err(ServiceError::InvalidArgument {
                field: "totp_code",
                reason: "send one of totp_code, recovery_code and passkey".into(),
            });
        }
    };
    Ok(proof)
}

/// The wire form of a started TOTP enrollment.
pub(crate) fn totp_enrollment(enrollment: TotpEnrollment) -> pb::StartTotpEnrollmentResponse {
    pb::StartTotpEnrollmentResponse {
        factor_id: enrollment.factor_id.as_str().to_owned(),
        otpauth_uri: enrollment.otpauth_uri,
        secret: enrollment.secret,
        expires_at: Some(timestamp(enrollment.expires_at)),
    }
}

/// The wire form of a factor.
pub(crate) fn factor(factor: Factor) -> pb::Factor {
    pb::Factor {
        id: factor.id.as_str().to_owned(),
        kind: factor.kind.as_str().to_owned(),
        name: factor.name,
        created_at: Some(timestamp(factor.created_at)),
        last_used_at: factor.last_used_at.map(timestamp),
    }
}

/// A W3C JSON object a browser produced (a passkey's answer), as the services read it.
pub(crate) fn browser_json(
    field: &'static str,
    value: Option<&pbjson_types::Struct>,
) -> Parsed<serde_json::Value> {
    let value = value.ok_or(ServiceError::InvalidArgument {
        field,
        reason: "is required".into(),
    })?;
    crate::pb::struct_json(value).map_err(|e| ServiceError::InvalidArgument {
        field,
        reason: e.to_string(),
    })
}

/// W3C JSON options for the browser, on the wire.
pub(crate) fn browser_options(options: &serde_json::Value) -> Option<pbjson_types::Struct> {
    serde_json::from_value(options.clone()).ok()
}

/// A ceremony id as a client sent it.
pub(crate) fn ceremony_id(raw: &str) -> Parsed<String> {
    let id = raw.trim();
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ServiceError::InvalidArgument {
            field: "ceremony_id",
            reason: "is not a ceremony id".into(),
        });
    }
    Ok(id.to_owned())
}

/// The wire form of a user.
pub(crate) fn user(user: User) -> pb::User {
    pb::User {
        etag: user.etag(),
        id: user.id.get(),
        email: user.email.as_str().to_owned(),
        first_name: user.first_name,
        last_name: user.last_name,
        is_active: user.is_active,
        is_verified: user.is_verified,
        is_staff: user.is_staff,
        is_superuser: user.is_superuser,
        date_joined: Some(timestamp(user.date_joined)),
        last_login: user.last_login.map(timestamp),
    }
}

pub(crate) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use proptest::prelude::*;
    use tonic::{Request, transport::server::TcpConnectInfo};

    use super::client_ip;
    use crate::domain::IpNet;

    fn from(peer: IpAddr, forwarded: &[String]) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(SocketAddr::new(peer, 4000)),
        });
        for value in forwarded {
            let value = tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes())
                .expect("hops hold no control characters");
            request.metadata_mut().append("x-forwarded-for", value);
        }
        request
    }

    /// A hop of a forwarded chain: an address, inside the proxies' range or not, or garbage.
    fn hop() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..=255).prop_map(|n| format!("10.0.0.{n}")),
            any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string()),
            any::<[u8; 16]>().prop_map(|o| IpAddr::from(o).to_string()),
            "[^\\x00-\\x1f\\x7f]{0,12}",
            Just(String::new()),
        ]
    }

    proptest! {
        /// Whatever a client writes into `x-forwarded-for`, the address taken is the peer's
        /// or one of the chain's, and addresses written left of the first hop no trusted proxy
        /// wrote (the ones a client controls) never change it.
        #[test]
        fn the_client_is_never_an_address_the_client_chose(
            chain in proptest::collection::vec(hop(), 0..6),
            forged in proptest::collection::vec(hop(), 0..4),
            untrusted_peer in any::<[u8; 4]>(),
        ) {
            let proxies = [IpNet::parse("10.0.0.0/8").unwrap()];
            let proxy: IpAddr = "10.1.2.3".parse().unwrap();
            let chosen = client_ip(&from(proxy, &[chain.join(",")]), &proxies).unwrap();
            let joined = chain.join(",");
            let listed: Vec<IpAddr> = joined
                .split(',')
                .filter_map(|hop| hop.trim().parse().ok())
                .map(super::canonical_ip)
                .collect();
            prop_assert!(chosen == proxy || listed.contains(&chosen));
            if !proxies[0].contains(chosen) {
                let mut longer = forged.clone();
                longer.extend(chain.iter().cloned());
                let again = client_ip(&from(proxy, &[longer.join(",")]), &proxies).unwrap();
                prop_assert_eq!(again, chosen);
            }
            // A peer outside the trusted range is the client, whatever it forwards.
            let peer = IpAddr::from(untrusted_peer);
            if !proxies[0].contains(peer) {
                prop_assert_eq!(client_ip(&from(peer, &[chain.join(",")]), &proxies), Some(super::canonical_ip(peer)));
            }
        }
    }
}
