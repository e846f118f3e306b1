//! Access tokens: short-lived JWTs (RFC 9068 `at+jwt`), one pinned algorithm, EdDSA by
//! default, signed from a key set that rotates by time.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::verified_tokens::{Verified, VerifiedTokens};
use crate::{
    config::JwtConfig,
    domain::{AuthMethods, Email, SessionId, UserId},
    text::hex,
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
    /// Authenticator assurance level of the session: `aal1` or `aal2`. Empty in tokens
    /// issued before it was carried.
    #[serde(default)]
    pub aal: String,
    /// How the session's user proved who they are (RFC 8176 values: `pwd`, `otp`, `fed`,
    /// and `mfa` at `aal2`).
    #[serde(default)]
    pub amr: Vec<String>,
    /// When the user last proved a factor in the session (seconds since the epoch).
    #[serde(default)]
    pub auth_time: i64,
}

/// What an access token says of how its session was authenticated.
#[derive(Debug, Clone, Copy)]
pub struct SessionAssurance<'a> {
    /// The kinds of factor the session used.
    pub methods: &'a AuthMethods,
    /// When its user last proved one.
    pub auth_time: DateTime<Utc>,
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
    /// The token of an `authorization` value; `None` for another scheme, or a token that is
    /// empty or more than one word (RFC 6750 allows one).
    #[must_use]
    pub fn from_authorization(value: &str) -> Option<Self> {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer")
            && !token.is_empty()
            && !token.contains(char::is_whitespace))
        .then(|| Self(token.to_owned()))
    }

    /// A token handed over as it is (an introspection request); `None` when empty.
    #[must_use]
    pub fn from_token(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(token.to_owned()))
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

/// One signing key: what signs with it, what verifies it, and when it signs.
#[derive(Clone)]
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key as a JWK, when others can verify (EdDSA).
    public_jwk: Option<serde_json::Value>,
    /// When it starts signing.
    activates_at: DateTime<Utc>,
    /// When the next key takes over, if one is scheduled.
    retires_at: Option<DateTime<Utc>>,
}

/// An Ed25519 private key and the time it starts signing, as the key set holds it.
#[derive(Debug, Clone)]
pub struct ScheduledKey {
    /// PKCS#8 PEM.
    pub pem: String,
    /// When it starts signing.
    pub activates_at: DateTime<Utc>,
}

/// Signs and verifies access tokens with a set of keys. At any instant the key that signs is
/// the latest whose activation has come, so replicas holding the same set agree without
/// talking; a key stays accepted (and published) until every token it signed has expired.
#[derive(Clone)]
pub struct TokenIssuer {
    algorithm: Algorithm,
    keys: Arc<RwLock<Arc<[Key]>>>,
    /// Whether the set comes from the database and rotates (not a pinned file or HS256).
    rotating: bool,
    issuer: String,
    audience: String,
    lifetime: chrono::Duration,
    /// Tokens whose signature checked out, shared by every clone.
    verified: Arc<VerifiedTokens>,
}

impl TokenIssuer {
    /// An EdDSA issuer pinned to one PKCS#8 PEM Ed25519 private key (`JWT_PRIVATE_KEY_FILE`).
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 private key.
    pub fn ed25519(pem: &str, config: &JwtConfig) -> anyhow::Result<Self> {
        let key = ed25519_key(pem, DateTime::UNIX_EPOCH)?;
        Ok(Self::build(Algorithm::EdDSA, vec![key], false, config))
    }

    /// An EdDSA issuer over a key set that rotates; `keys` in any order, at least one.
    ///
    /// # Errors
    /// When a key is not an Ed25519 private key, or there is none.
    pub fn ed25519_set(keys: &[ScheduledKey], config: &JwtConfig) -> anyhow::Result<Self> {
        let issuer = Self::build(Algorithm::EdDSA, Vec::new(), true, config);
        issuer.replace_keys(keys)?;
        Ok(issuer)
    }

    /// An HS256 issuer with a secret key (seed compatibility; nobody else can verify).
    #[must_use]
    pub fn hs256(secret: &[u8], config: &JwtConfig) -> Self {
        let key = Key {
            kid: kid_of(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            public_jwk: None,
            activates_at: DateTime::UNIX_EPOCH,
            retires_at: None,
        };
        Self::build(Algorithm::HS256, vec![key], false, config)
    }

    /// Replaces the key set (a reload from the database); every clone sees the new set.
    ///
    /// # Errors
    /// When a key is not an Ed25519 private key, or there is none.
    pub fn replace_keys(&self, keys: &[ScheduledKey]) -> anyhow::Result<()> {
        let mut loaded = keys
            .iter()
            .map(|key| ed25519_key(&key.pem, key.activates_at))
            .collect::<anyhow::Result<Vec<Key>>>()?;
        anyhow::ensure!(!loaded.is_empty(), "the key set holds no key");
        loaded.sort_by_key(|key| key.activates_at);
        let next_activations: Vec<_> = loaded.iter().skip(1).map(|k| k.activates_at).collect();
        for (key, next) in loaded.iter_mut().zip(next_activations) {
            key.retires_at = Some(next);
        }
        let mut current = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = loaded.into();
        Ok(())
    }

    /// Whether the key set rotates (it comes from the database).
    #[must_use]
    pub fn is_rotating(&self) -> bool {
        self.rotating
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

    /// The `kid` of an Ed25519 private key, as tokens and the JWKS name it.
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 private key.
    pub fn kid_of_pem(pem: &str) -> anyhow::Result<String> {
        Ok(ed25519_key(pem, DateTime::UNIX_EPOCH)?.kid)
    }

    /// Whether a key that retired at `retired_at` may still have live tokens at `now`.
    #[must_use]
    pub fn still_needed(&self, retired_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now <= retired_at + self.lifetime + chrono::Duration::seconds(LEEWAY_SECONDS)
    }

    fn build(algorithm: Algorithm, keys: Vec<Key>, rotating: bool, config: &JwtConfig) -> Self {
        Self {
            algorithm,
            keys: Arc::new(RwLock::new(keys.into())),
            rotating,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            lifetime: crate::clock::span(config.access_lifetime),
            verified: Arc::default(),
        }
    }

    fn snapshot(&self) -> Arc<[Key]> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether `key` is still published and accepted at `now`.
    fn accepts(&self, key: &Key, now: DateTime<Utc>) -> bool {
        key.retires_at
            .is_none_or(|retired| self.still_needed(retired, now))
    }

    /// The JOSE name of the signing algorithm (`EdDSA` or `HS256`).
    #[must_use]
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            _ => "EdDSA",
        }
    }

    /// The JSON Web Key Set other services verify access tokens with at `now`: the next key,
    /// the active one and those retired whose tokens may still be live. Empty for HS256,
    /// whose key must stay secret.
    #[must_use]
    pub fn jwks(&self, now: DateTime<Utc>) -> serde_json::Value {
        let keys = self.snapshot();
        let published: Vec<&serde_json::Value> = keys
            .iter()
            .filter(|key| self.accepts(key, now))
            .filter_map(|key| key.public_jwk.as_ref())
            .collect();
        serde_json::json!({ "keys": published })
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
        assurance: SessionAssurance<'_>,
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
            aal: assurance.methods.aal().as_str().to_owned(),
            amr: assurance.methods.amr(),
            auth_time: assurance.auth_time.timestamp(),
        };
        let keys = self.snapshot();
        let key = active(&keys, now).ok_or_else(|| TokenError::Signing("no signing key".into()))?;
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Verifies signature, algorithm, `typ`, issuer, audience, kind and lifetime, and parses
    /// the subject and session. A token verified before skips the signature check; its key
    /// must still be in the set and accepted, and its lifetime is checked again, at `now`.
    ///
    /// # Errors
    /// `Expired` past `exp` (with leeway); `Invalid` for anything else wrong.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<VerifiedAccess, TokenError> {
        let keys = self.snapshot();
        let verified = match self.verified.get(token) {
            Some(verified) => verified,
            None => self
                .verified
                .remember(token, self.check_signature(token, &keys, now)?),
        };
        if !keys
            .iter()
            .any(|key| key.kid == verified.kid && self.accepts(key, now))
        {
            return Err(TokenError::Invalid);
        }
        let claims = &verified.access.claims;
        if claims.iat > now.timestamp() + LEEWAY_SECONDS {
            return Err(TokenError::Invalid);
        }
        if claims.exp + LEEWAY_SECONDS <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(verified.access.clone())
    }

    /// Checks what a token says regardless of time: header, signature by a key of `keys`
    /// accepted at `now`, issuer, audience and kind; parses the subject and session.
    fn check_signature(
        &self,
        token: &str,
        keys: &[Key],
        now: DateTime<Utc>,
    ) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != self.algorithm || header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::Invalid);
        }
        // An unknown or retired key is refused before any signature work.
        let key = keys
            .iter()
            .find(|key| header.kid.as_deref() == Some(key.kid.as_str()))
            .filter(|key| self.accepts(key, now))
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(self.algorithm);
        // Expiry is checked by `verify` against the service clock, which tests can move.
        validation.validate_exp = false;
        validation.required_spec_claims =
            HashSet::from(["exp", "iat", "iss", "aud", "sub"].map(String::from));
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.token_type != ACCESS_TOKEN_TYPE {
            return Err(TokenError::Invalid);
        }
        let user_id = claims
            .sub
            .parse()
            .ok()
            .and_then(|id| UserId::parse(id).ok())
            .ok_or(TokenError::Invalid)?;
        let session_id = SessionId::parse(&claims.sid).map_err(|_| TokenError::Invalid)?;
        Ok(Verified {
            kid: key.kid.clone(),
            access: VerifiedAccess {
                user_id,
                session_id,
                claims,
            },
        })
    }
}

/// The key that signs at `now`: the latest whose activation has come (the first, before any).
fn active(keys: &[Key], now: DateTime<Utc>) -> Option<&Key> {
    keys.iter()
        .rev()
        .find(|key| key.activates_at <= now)
        .or_else(|| keys.first())
}

/// The key id: a hash prefix of the public part (or, for HMAC, of the secret), which names
/// the key without revealing it.
fn kid_of(key_material: &[u8]) -> String {
    hex(&Sha256::digest(key_material)[..8])
}

fn ed25519_key(pem: &str, activates_at: DateTime<Utc>) -> anyhow::Result<Key> {
    let signing = SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {e}"))?;
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("re-encoding the signing key: {e}"))?;
    let public = signing.verifying_key().to_bytes();
    let kid = kid_of(&public);
    Ok(Key {
        public_jwk: Some(serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        })),
        kid,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding: DecodingKey::from_ed_der(&public),
        activates_at,
        retires_at: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::{BearerToken, ScheduledKey, SessionAssurance, TokenError, TokenIssuer};
    use crate::{
        config::{JwtAlgorithm, JwtConfig},
        domain::{AuthMethod, AuthMethods, Email, SessionId, UserId},
    };

    fn config() -> JwtConfig {
        JwtConfig {
            algorithm: JwtAlgorithm::EdDsa,
            private_key_file: None,
            issuer: "identity".into(),
            audience: "services".into(),
            access_lifetime: Duration::from_secs(300),
            refresh_lifetime: Duration::from_secs(86_400),
            refresh_reuse_grace: Duration::from_secs(10),
            session_absolute_lifetime: Duration::from_secs(86_400 * 30),
            key_rotation_period: Duration::from_secs(86_400 * 30),
            key_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            key_encryption_key: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_other_keys_expiry_and_tampering() {
        let pem = TokenIssuer::generate_ed25519_pem().unwrap();
        let issuer = TokenIssuer::ed25519(&pem, &config()).unwrap();
        let now = Utc::now();
        let (user, session) = (UserId::parse(7).unwrap(), SessionId::generate());
        let email = Email::parse("a@example.com").unwrap();
        let methods = AuthMethods::of(&[AuthMethod::Password, AuthMethod::Totp]);
        let assurance = SessionAssurance {
            methods: &methods,
            auth_time: now,
        };
        let token = issuer
            .issue(user, &email, &session, assurance, now)
            .unwrap();
        let verified = issuer.verify(&token, now).unwrap();
        assert_eq!((verified.user_id, &verified.session_id), (user, &session));
        assert_eq!(verified.claims.sub, "7");
        assert_eq!(verified.claims.aal, "aal2");
        assert_eq!(verified.claims.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(verified.claims.auth_time, now.timestamp());

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
    fn a_token_verified_before_is_refused_once_its_key_leaves_the_set() {
        let now = Utc::now();
        let key = |pem: String| ScheduledKey {
            pem,
            activates_at: now - chrono::Duration::days(1),
        };
        let first = key(TokenIssuer::generate_ed25519_pem().unwrap());
        let issuer = TokenIssuer::ed25519_set(std::slice::from_ref(&first), &config()).unwrap();
        let (user, session) = (UserId::parse(7).unwrap(), SessionId::generate());
        let email = Email::parse("a@example.com").unwrap();
        let methods = AuthMethods::of(&[AuthMethod::Password]);
        let assurance = SessionAssurance {
            methods: &methods,
            auth_time: now,
        };
        let token = issuer
            .issue(user, &email, &session, assurance, now)
            .unwrap();
        for _ in 0..2 {
            assert_eq!(issuer.verify(&token, now).unwrap().user_id, user);
        }
        let early = now - chrono::Duration::seconds(31);
        assert!(matches!(
            issuer.verify(&token, early),
            Err(TokenError::Invalid)
        ));

        let second = key(TokenIssuer::generate_ed25519_pem().unwrap());
        issuer.replace_keys(&[second]).unwrap();
        assert!(matches!(
            issuer.verify(&token, now),
            Err(TokenError::Invalid)
        ));
        issuer.replace_keys(&[first]).unwrap();
        assert_eq!(issuer.verify(&token, now).unwrap().user_id, user);
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
