//! Wire to domain and back. Parsing happens here, at the edge; services never see raw strings
//! where a domain type exists.

use std::net::IpAddr;

use pbjson_types::Timestamp;
use tonic::Request;

use crate::{
    domain::{Email, ParseError, User},
    error::ServiceError,
    pb,
    services::{Caller, google_login::GoogleCredential},
};

/// Parses one field, naming it in the error.
pub(crate) fn field<T>(
    name: &'static str,
    parsed: Result<T, ParseError>,
) -> Result<T, ServiceError> {
    parsed.map_err(|e| ServiceError::invalid(name, &e))
}

/// Parses the `email` field common to many requests.
pub(crate) fn email(raw: &str) -> Result<Email, ServiceError> {
    field("email", Email::parse(raw))
}

/// Exactly one of `access_token` and `id_token`.
pub(crate) fn google_credential(
    request: pb::GoogleLoginRequest,
) -> Result<GoogleCredential, ServiceError> {
    let access_token = request.access_token.trim().to_owned();
    let id_token = request.id_token.trim().to_owned();
    match (access_token.is_empty(), id_token.is_empty()) {
        (false, true) => Ok(GoogleCredential::AccessToken(access_token)),
        (true, false) => Ok(GoogleCredential::IdToken(id_token)),
        (true, true) => Err(ServiceError::InvalidArgument {
            field: "access_token",
            reason: "or id_token is required".into(),
        }),
        (false, false) => Err(ServiceError::InvalidArgument {
            field: "id_token",
            reason: "must not be sent together with access_token".into(),
        }),
    }
}

/// The bearer token of `authorization` metadata, if any.
pub(crate) fn bearer<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The client's address: the peer, or the last `x-forwarded-for` hop when the peer is a trusted proxy.
pub(crate) fn caller<T>(request: &Request<T>, trusted_proxies: &[IpAddr]) -> Caller {
    let peer = request.remote_addr().map(|addr| addr.ip());
    let forwarded = || -> Option<IpAddr> {
        let header = request.metadata().get("x-forwarded-for")?.to_str().ok()?;
        header.rsplit(',').next()?.trim().parse().ok()
    };
    let ip = match peer {
        Some(peer) if trusted_proxies.contains(&peer) => forwarded().or(Some(peer)),
        other => other,
    };
    Caller { ip }
}

/// The wire form of a user.
pub(crate) fn user(user: User) -> pb::User {
    pb::User {
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

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}
