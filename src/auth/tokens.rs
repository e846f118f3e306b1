//! Access tokens: short-lived JWTs (RFC 9068 `at+jwt`), one pinned algorithm, EdDSA by default.

use std::collections::HashSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keyed_hash::hex;
use crate::{
    config::JwtConfig,
    domain::{Email, SessionId, UserId},
};

/// The JOSE `typ` of access tokens (RFC 9068).
const ACCESS_TYP: &str = "at+jwt";
/// The `token_type` claim of access tokens, as Simple JWT writes it.
const ACCESS_TOKEN_TYPE: &str = "access";
/// Clock skew tolerated on `exp` and `iat` (RFC 8725 asks for little).
const LEEWAY_SECONDS: i64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// User id, as a string (RFC 7519).
    pub sub: String,
    /// The user's email at issue time.
    pub email: String,
    /// Always `access`.
    pub token_type: String,
    /// Unique token id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Session id: revoking the session voids the token for this service.
    pub sid: String,
}

/// An access token whose signature, kind and lifetime checked out, with its subject and
/// session parsed.
#[derive(Debug, Clone)]
pub struct VerifiedAccess {
    /// The user the token was issued to (`sub`).
    pub user_id: UserId,
    /// The session it belongs to (`sid`).
    pub session_id: SessionId,
    /// Every claim, as signed.
    pub claims: AccessClaims,
}

/// An access token as a caller presented it, from `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token of an `authorization` value; `None` for another scheme or an empty token.
    #[must_use]
    pub fn from_authorization(value: &str) -> Option<Self> {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// The token, for verification.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// Why an access token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, forged, of another kind, or for another issuer or audience.
    #[error("invalid token")]
    Invalid,
    /// Past `exp`.
    #[error("expired token")]
    Expired,
    /// The token could not be signed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs and verifies access tokens with one key.
#[derive(Clone)]
pub struct TokenIssuer {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    /// The public key as a JWK, when others can verify (EdDSA).
    public_jwk: Option<serde_json::Value>,
    issuer: String,
    audience: String,
    lifetime: chrono::Duration,
}

impl TokenIssuer {
    /// An EdDSA issuer from a PKCS#8 PEM Ed25519 private key.
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 private key.
    pub fn ed25519(pem: &str, config: &JwtConfig) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {e}"))?;
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("re-encoding the signing key: {e}"))?;
        let public = signing.verifying_key().to_bytes();
        let mut issuer = Self::build(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(der.as_bytes()),
            DecodingKey::from_ed_der(&public),
            &public,
            config,
        );
        issuer.public_jwk = Some(serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public),
            "kid": issuer.kid,
            "alg": "EdDSA",
            "use": "sig",
        }));
        Ok(issuer)
    }

    /// An HS256 issuer keyed by `SECRET_KEY` (seed compatibility; nobody else can verify).
    #[must_use]
    pub fn hs256(secret: &[u8], config: &JwtConfig) -> Self {
        Self::build(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            secret,
            config,
        )
    }

    /// A new random Ed25519 private key as PKCS#8 PEM.
    ///
    /// # Errors
    /// When randomness or encoding fails.
    pub fn generate_ed25519_pem() -> anyhow::Result<String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let pem = SigningKey::from_bytes(&seed)
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
        Ok(pem.to_string())
    }

    fn build(
        algorithm: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        key_material: &[u8],
        config: &JwtConfig,
    ) -> Self {
        // The kid names the key without revealing it: a hash prefix of the public part (or, for HMAC, of the secret).
        let kid = hex(&Sha256::digest(key_material)[..8]);
        Self {
            algorithm,
            encoding,
            decoding,
            kid,
            public_jwk: None,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            lifetime: chrono::Duration::from_std(config.access_lifetime)
                .unwrap_or(chrono::Duration::minutes(5)),
        }
    }

    /// The JOSE name of the signing algorithm (`EdDSA` or `HS256`).
    #[must_use]
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            _ => "EdDSA",
        }
    }

    /// The JSON Web Key Set other services verify access tokens with; empty for HS256,
    /// whose key must stay secret.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.public_jwk.iter().collect::<Vec<_>>() })
    }

    /// Issues an access token for a session.
    ///
    /// # Errors
    /// When signing fails.
    pub fn issue(
        &self,
        user_id: UserId,
        email: &Email,
        session_id: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let claims = AccessClaims {
            sub: user_id.to_string(),
            email: email.as_str().to_owned(),
            token_type: ACCESS_TOKEN_TYPE.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now.timestamp(),
            exp: (now + self.lifetime).timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sid: session_id.as_str().to_owned(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Verifies signature, algorithm, `typ`, issuer, audience, kind and lifetime, and parses
    /// the subject and session.
    ///
    /// # Errors
    /// `Expired` past `exp` (with leeway); `Invalid` for anything else wrong.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<VerifiedAccess, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != self.algorithm || header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(self.algorithm);
        // Expiry is checked below against the service clock, which tests can move.
        validation.validate_exp = false;
        validation.required_spec_claims =
            HashSet::from(["exp", "iat", "iss", "aud", "sub"].map(String::from));
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.token_type != ACCESS_TOKEN_TYPE || claims.iat > now.timestamp() + LEEWAY_SECONDS {
            return Err(TokenError::Invalid);
        }
        if claims.exp + LEEWAY_SECONDS <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        let user_id = claims
            .sub
            .parse()
            .ok()
            .and_then(|id| UserId::parse(id).ok())
            .ok_or(TokenError::Invalid)?;
        let session_id = SessionId::parse(&claims.sid).map_err(|_| TokenError::Invalid)?;
        Ok(VerifiedAccess {
            user_id,
            session_id,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::{BearerToken, TokenError, TokenIssuer};
    use crate::{
        config::{JwtAlgorithm, JwtConfig},
        domain::{Email, SessionId, UserId},
    };

    fn config() -> JwtConfig {
        JwtConfig {
            algorithm: JwtAlgorithm::EdDsa,
            private_key_file: None,
            issuer: "identity".into(),
            audience: "services".into(),
            access_lifetime: Duration::from_secs(300),
            refresh_lifetime: Duration::from_secs(86_400),
            session_absolute_lifetime: Duration::from_secs(86_400 * 30),
        }
    }

    #[test]
    fn round_trips_and_refuses_other_keys_expiry_and_tampering() {
        let pem = TokenIssuer::generate_ed25519_pem().unwrap();
        let issuer = TokenIssuer::ed25519(&pem, &config()).unwrap();
        let now = Utc::now();
        let (user, session) = (UserId::parse(7).unwrap(), SessionId::generate());
        let email = Email::parse("a@example.com").unwrap();
        let token = issuer.issue(user, &email, &session, now).unwrap();
        let verified = issuer.verify(&token, now).unwrap();
        assert_eq!((verified.user_id, &verified.session_id), (user, &session));
        assert_eq!(verified.claims.sub, "7");

        let other =
            TokenIssuer::ed25519(&TokenIssuer::generate_ed25519_pem().unwrap(), &config()).unwrap();
        assert!(matches!(
            other.verify(&token, now),
            Err(TokenError::Invalid)
        ));

        let later = now + chrono::Duration::seconds(300 + 31);
        assert!(matches!(
            issuer.verify(&token, later),
            Err(TokenError::Expired)
        ));

        let hs = TokenIssuer::hs256(&[1; 32], &config());
        assert!(matches!(hs.verify(&token, now), Err(TokenError::Invalid)));
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(matches!(
            issuer.verify(&tampered, now),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn only_a_non_empty_bearer_credential_is_a_bearer_token() {
        let token = BearerToken::from_authorization(" bearer  abc ").unwrap();
        assert_eq!(token.expose(), "abc");
        assert_eq!(format!("{token:?}"), "BearerToken(***)");
        for value in ["", "Bearer", "Bearer  ", "Basic abc", "abc"] {
            assert!(
                BearerToken::from_authorization(value).is_none(),
                "{value:?}"
            );
        }
    }
}
