//! Credentials: password hashing, access tokens, refresh tokens, keyed hashes for codes and
//! links, and the WebAuthn relying party.

mod challenge;
mod django_hashes;
mod django_tokens;
mod key_encryption;
mod keyed_hash;
mod link_tokens;
mod passkeys;
mod password_hasher;
mod refresh;
mod service_credentials;
mod tokens;
mod totp;
mod verified_tokens;

pub use challenge::ChallengeToken;
pub use django_hashes::{HashFormat, StoredHash};
pub use django_tokens::{
    DjangoLinkState, DjangoRefresh, DjangoRefreshTokens, DjangoTokenError, DjangoTokens,
};
pub use key_encryption::{KeyEncryption, Sealed};
pub use keyed_hash::ServerSecret;
pub(crate) use keyed_hash::constant_time_eq;
pub use link_tokens::{LinkPurpose, LinkToken, LinkTokenError, LinkTokens, UserState};
pub use passkeys::{
    CEREMONY_TIMEOUT, Ceremony, PasskeyError, RelyingParty, credential_id_of_key, credential_key,
    sign_in_answer,
};
pub use password_hasher::{HashError, PasswordHasher, Verification};
pub use refresh::RefreshToken;
pub use service_credentials::{ClientCertificate, Scope, ServiceCredential, ServiceCredentials};
pub use tokens::{
    AccessClaims, BearerToken, ScheduledKey, SessionAssurance, TokenError, TokenIssuer,
    VerifiedAccess,
};
pub use totp::TotpSecret;
