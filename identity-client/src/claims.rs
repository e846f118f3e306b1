//! The claims of an access token, checked as the server checks them.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;

use crate::verifier::Refusal;

/// The JOSE `typ` of access tokens (RFC 9068).
pub(crate) const ACCESS_TYP: &str = "at+jwt";
/// The `token_type` claim of access tokens.
const ACCESS_TOKEN_TYPE: &str = "access";

/// An access token that verified: whose it is, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user's id (`sub`).
    pub user_id: i64,
    /// The session the token belongs to (`sid`); revoking it voids the token.
    pub session_id: String,
    /// The user's email when the token was issued.
    pub email: String,
    /// The token's own id (`jti`).
    pub token_id: String,
    /// Issued at, seconds since the epoch (`iat`).
    pub issued_at: i64,
    /// Expires at, seconds since the epoch (`exp`).
    pub expires_at: i64,
    /// The session's authenticator assurance level (`aal`): `aal1` or `aal2`; empty in tokens
    /// of a server that did not carry it.
    pub aal: String,
    /// How the session's user proved who they are (`amr`, RFC 8176 values).
    pub amr: Vec<String>,
    /// When they last proved a factor, seconds since the epoch (`auth_time`).
    pub auth_time: i64,
}

impl VerifiedToken {
    /// Whether the session proved a second factor (`aal2`) within `max_age` before `now`
    /// (seconds since the epoch): what a service asks before a sensitive change, as the
    /// server asks it (`STEP_UP_MAX_AGE`) of `ChangePassword`. "aal2 within 10 minutes" is
    /// `token.is_aal2_within(Duration::from_secs(600), now)`.
    #[must_use]
    pub fn is_aal2_within(&self, max_age: std::time::Duration, now: i64) -> bool {
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        self.aal == "aal2" && now.saturating_sub(self.auth_time) <= max_age
    }
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    email: String,
    token_type: String,
    jti: String,
    iat: i64,
    exp: i64,
    sid: String,
    #[serde(default)]
    aal: String,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    auth_time: i64,
}

/// What a token must be to verify, besides its key.
#[derive(Debug, Clone)]
pub(crate) struct Expectations {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `iat`, in seconds.
    pub leeway: i64,
}

/// The `kid` of a token that claims to be an EdDSA access token; a refusal for any other.
pub(crate) fn access_token_kid(token: &str) -> Result<String, Refusal> {
    let header: Header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TYP) {
        return Err(Refusal::Malformed);
    }
    header.kid.ok_or(Refusal::Malformed)
}

impl Expectations {
    /// The token's claims, when `key` signed it and they are what the server issues and
    /// live at `now` (seconds since the epoch).
    pub(crate) fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        now: i64,
    ) -> Result<VerifiedToken, Refusal> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Lifetime is checked below against the verifier's clock.
        validation.validate_exp = false;
        validation.required_spec_claims =
            HashSet::from(["exp", "iat", "iss", "aud", "sub"].map(String::from));
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer
                | jsonwebtoken::errors::ErrorKind::InvalidAudience => Refusal::NotForUs,
                _ => Refusal::Malformed,
            })?
            .claims;
        if claims.token_type != ACCESS_TOKEN_TYPE || claims.sid.is_empty() {
            return Err(Refusal::Malformed);
        }
        if claims.iat > now + self.leeway {
            return Err(Refusal::NotYetValid);
        }
        if claims.exp + self.leeway <= now {
            return Err(Refusal::Expired);
        }
        let user_id = claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(Refusal::Malformed)?;
        Ok(VerifiedToken {
            user_id,
            session_id: claims.sid,
            email: claims.email,
            token_id: claims.jti,
            issued_at: claims.iat,
            expires_at: claims.exp,
            aal: claims.aal,
            amr: claims.amr,
            auth_time: claims.auth_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
    use serde_json::{Value, json};

    use super::{Expectations, access_token_kid};
    use crate::Refusal;

    const NOW: i64 = 1_800_000_000;

    fn key(seed: u8) -> (EncodingKey, DecodingKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let der = signing.to_pkcs8_der().unwrap();
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        (
            EncodingKey::from_ed_der(der.as_bytes()),
            DecodingKey::from_ed_components(&x).unwrap(),
        )
    }

    fn claims() -> Value {
        json!({
            "sub": "42", "email": "a@example.com", "token_type": "access", "jti": "j",
            "iat": NOW, "exp": NOW + 300, "iss": "identity", "aud": "identity", "sid": "s1",
        })
    }

    fn sign(claims: &Value, seed: u8) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &key(seed).0).unwrap()
    }

    fn expectations() -> Expectations {
        Expectations {
            issuer: "identity".into(),
            audience: "identity".into(),
            leeway: 30,
        }
    }

    fn check(claims: &Value, now: i64) -> Result<i64, Refusal> {
        expectations()
            .check(&sign(claims, 1), &key(1).1, now)
            .map(|token| token.user_id)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[field] = value;
        claims
    }

    #[test]
    fn a_token_as_the_server_issues_it_verifies() {
        let token = expectations()
            .check(&sign(&claims(), 1), &key(1).1, NOW)
            .unwrap();
        assert_eq!((token.user_id, token.session_id.as_str()), (42, "s1"));
        assert_eq!(access_token_kid(&sign(&claims(), 1)).unwrap(), "k1");
    }

    #[test]
    fn a_service_states_aal2_within_ten_minutes_locally() {
        let ten_minutes = std::time::Duration::from_secs(600);
        let stepped_up = with("aal", json!("aal2"));
        let mut stepped_up = stepped_up;
        stepped_up["amr"] = json!(["pwd", "otp", "mfa"]);
        stepped_up["auth_time"] = json!(NOW - 60);
        let token = expectations()
            .check(&sign(&stepped_up, 1), &key(1).1, NOW)
            .unwrap();
        assert_eq!(token.amr, ["pwd", "otp", "mfa"]);
        assert!(token.is_aal2_within(ten_minutes, NOW));
        assert!(!token.is_aal2_within(ten_minutes, NOW - 60 + 601));
        // A password-only session, and a token of a server that carried no level, are not.
        let password = expectations()
            .check(&sign(&with("aal", json!("aal1")), 1), &key(1).1, NOW)
            .unwrap();
        assert!(!password.is_aal2_within(ten_minutes, NOW));
        let older = expectations()
            .check(&sign(&claims(), 1), &key(1).1, NOW)
            .unwrap();
        assert!(!older.is_aal2_within(ten_minutes, NOW));
    }

    #[test]
    fn lifetime_is_checked_with_the_leeway() {
        assert_eq!(check(&claims(), NOW + 300 + 29), Ok(42));
        assert_eq!(check(&claims(), NOW + 300 + 30), Err(Refusal::Expired));
        assert_eq!(check(&claims(), NOW - 31), Err(Refusal::NotYetValid));
    }

    #[test]
    fn another_key_issuer_audience_or_kind_is_refused() {
        assert_eq!(
            expectations().check(&sign(&claims(), 2), &key(1).1, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(&with("aud", json!("billing")), NOW),
            Err(Refusal::NotForUs)
        );
        assert_eq!(
            check(&with("iss", json!("evil")), NOW),
            Err(Refusal::NotForUs)
        );
        assert_eq!(
            check(&with("token_type", json!("refresh")), NOW),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            check(&with("sub", json!("0")), NOW),
            Err(Refusal::Malformed)
        );
        assert_eq!(check(&with("sid", json!("")), NOW), Err(Refusal::Malformed));
    }

    #[test]
    fn only_eddsa_access_tokens_with_a_kid_get_as_far_as_a_key() {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        let hmac =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"x")).unwrap();
        assert_eq!(access_token_kid(&hmac), Err(Refusal::Malformed));
        let mut untyped = Header::new(Algorithm::EdDSA);
        untyped.kid = Some("k1".into());
        let untyped = jsonwebtoken::encode(&untyped, &claims(), &key(1).0).unwrap();
        assert_eq!(access_token_kid(&untyped), Err(Refusal::Malformed));
        assert_eq!(access_token_kid("not.a.token"), Err(Refusal::Malformed));
    }
}
