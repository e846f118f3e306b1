//! Password hashes as Django stores them, so accounts imported from a Django deployment sign
//! in with the password they have: `pbkdf2_sha256`, `pbkdf2_sha1`, `argon2` (Django's
//! wrapping of a PHC string), `bcrypt_sha256` and `bcrypt`; `!` marks an unusable password.
//! A match is always re-hashed to argon2id by the caller.

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

/// A stored hash, by the format that decides how it is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum StoredHash<'a> {
    /// `identity`'s own: an argon2id PHC string.
    Argon2id,
    /// Django's `argon2$…`: the PHC string it wraps (with its leading `$` restored).
    DjangoArgon2(String),
    /// Django's `pbkdf2_sha256$iterations$salt$hash` or `pbkdf2_sha1$…`.
    DjangoPbkdf2 {
        /// The HMAC's digest.
        digest: Pbkdf2Digest,
        /// Rounds.
        iterations: u32,
        /// The salt, as Django wrote it (its bytes are the salt).
        salt: &'a str,
        /// The derived key, decoded from base64.
        expected: Vec<u8>,
    },
    /// Django's `bcrypt$$2b$…`, or `bcrypt_sha256$$2b$…` over the password's hex SHA-256.
    DjangoBcrypt {
        /// Whether the password is pre-hashed with SHA-256 (`bcrypt_sha256`).
        sha256: bool,
        /// The bcrypt string (`$2b$rounds$salthash`).
        hash: &'a str,
    },
    /// Django's unusable password (`!` and random characters): nothing signs in.
    Unusable,
    /// A format this build cannot check.
    Unknown,
}

/// The digest of a PBKDF2 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf2Digest {
    /// `pbkdf2_sha256`.
    Sha256,
    /// `pbkdf2_sha1`.
    Sha1,
}

/// The most PBKDF2 rounds accepted: far above Django's defaults (1 000 000 in 5.2), low
/// enough that a forged row cannot hold a hashing thread for minutes.
const MAX_PBKDF2_ITERATIONS: u32 = 20_000_000;

impl<'a> StoredHash<'a> {
    /// Classifies a stored hash.
    #[must_use]
    pub fn parse(stored: &'a str) -> Self {
        if stored.starts_with("$argon2id$") {
            return Self::Argon2id;
        }
        if stored.starts_with('!') {
            return Self::Unusable;
        }
        let Some((algorithm, rest)) = stored.split_once('$') else {
            return Self::Unknown;
        };
        match algorithm {
            "argon2" if rest.starts_with("argon2") => Self::DjangoArgon2(format!("${rest}")),
            "pbkdf2_sha256" => pbkdf2(Pbkdf2Digest::Sha256, rest),
            "pbkdf2_sha1" => pbkdf2(Pbkdf2Digest::Sha1, rest),
            "bcrypt" | "bcrypt_sha256" if rest.starts_with("$2") => Self::DjangoBcrypt {
                sha256: algorithm == "bcrypt_sha256",
                hash: rest,
            },
            _ => Self::Unknown,
        }
    }

    /// The format, for an import's report.
    #[must_use]
    pub fn format(&self) -> HashFormat {
        match self {
            Self::Argon2id => HashFormat::Argon2id,
            Self::DjangoArgon2(_) => HashFormat::DjangoArgon2,
            Self::DjangoPbkdf2 {
                digest: Pbkdf2Digest::Sha256,
                ..
            } => HashFormat::Pbkdf2Sha256,
            Self::DjangoPbkdf2 {
                digest: Pbkdf2Digest::Sha1,
                ..
            } => HashFormat::Pbkdf2Sha1,
            Self::DjangoBcrypt { sha256: true, .. } => HashFormat::BcryptSha256,
            Self::DjangoBcrypt { sha256: false, .. } => HashFormat::Bcrypt,
            Self::Unusable => HashFormat::Unusable,
            Self::Unknown => HashFormat::Unknown,
        }
    }

    /// Whether `password` matches a Django PBKDF2 or bcrypt hash; `None` for the other
    /// formats (argon2 is checked on the caller's reusable memory).
    #[must_use]
    pub fn matches_keyed(&self, password: &str) -> Option<bool> {
        match self {
            Self::DjangoPbkdf2 {
                digest,
                iterations,
                salt,
                expected,
            } => {
                let mut derived = vec![0u8; expected.len()];
                let (password, salt) = (password.as_bytes(), salt.as_bytes());
                let computed = match digest {
                    Pbkdf2Digest::Sha256 => pbkdf2::pbkdf2::<hmac::Hmac<Sha256>>(
                        password,
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                    Pbkdf2Digest::Sha1 => pbkdf2::pbkdf2::<hmac::Hmac<sha1::Sha1>>(
                        password,
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                };
                Some(computed.is_ok() && super::keyed_hash::constant_time_eq(&derived, expected))
            }
            Self::DjangoBcrypt { sha256, hash } => {
                let prehashed;
                let input = if *sha256 {
                    prehashed = crate::text::hex(&Sha256::digest(password.as_bytes()));
                    prehashed.as_bytes()
                } else {
                    password.as_bytes()
                };
                Some(bcrypt::verify(input, hash).unwrap_or(false))
            }
            _ => None,
        }
    }
}

fn pbkdf2(digest: Pbkdf2Digest, rest: &str) -> StoredHash<'_> {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next())
    else {
        return StoredHash::Unknown;
    };
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n));
    let expected = STANDARD.decode(hash).ok().filter(|bytes| !bytes.is_empty());
    match (iterations, expected) {
        (Some(iterations), Some(expected)) if !salt.is_empty() => StoredHash::DjangoPbkdf2 {
            digest,
            iterations,
            salt,
            expected,
        },
        _ => StoredHash::Unknown,
    }
}

/// A stored hash's format, as an import reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashFormat {
    /// `identity`'s own.
    Argon2id,
    /// Django's `argon2`.
    DjangoArgon2,
    /// Django's `pbkdf2_sha256`.
    Pbkdf2Sha256,
    /// Django's `pbkdf2_sha1`.
    Pbkdf2Sha1,
    /// Django's `bcrypt_sha256`.
    BcryptSha256,
    /// Django's `bcrypt`.
    Bcrypt,
    /// No usable password (`!`).
    Unusable,
    /// A format this build cannot check.
    Unknown,
}

impl HashFormat {
    /// Whether this build signs in with a password stored so.
    #[must_use]
    pub fn is_verifiable(self) -> bool {
        !matches!(self, Self::Unusable | Self::Unknown)
    }
}

impl std::fmt::Display for HashFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Argon2id => "argon2id",
            Self::DjangoArgon2 => "argon2 (Django)",
            Self::Pbkdf2Sha256 => "pbkdf2_sha256",
            Self::Pbkdf2Sha1 => "pbkdf2_sha1",
            Self::BcryptSha256 => "bcrypt_sha256",
            Self::Bcrypt => "bcrypt",
            Self::Unusable => "unusable (!)",
            Self::Unknown => "unknown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::StoredHash;

    /// Made by Django 5.1's own hashers (cheap parameters) for this password.
    const PASSWORD: &str = "correct horse battery staple ünïcode";
    const PBKDF2_SHA256: &str =
        "pbkdf2_sha256$1000$N3YY7ySvzEuLpyC8kSPGOv$vrS4iYw/dFf6/DAx/cz2Quisw72bthTbFT/kQ0y+Ueo=";
    const PBKDF2_SHA1: &str =
        "pbkdf2_sha1$1000$S9nuxS97MTj2dMtpNJYnar$Q1bnGAK1gHqucZuoAEdPLIgfsW4=";
    const BCRYPT_SHA256: &str =
        "bcrypt_sha256$$2b$04$fsSDUttWNovygoE34a7UleVB7jiZQ6zu9RUdnF8tvsChCuR5/vfYO";
    const BCRYPT: &str = "bcrypt$$2b$04$LiMLPvDCcSdbyHiLkWIWLOSAKO6Kblp3yeZQK1pUJI7oNbiUiqCHS";

    #[test]
    fn django_pbkdf2_and_bcrypt_hashes_verify_their_password_only() {
        for stored in [PBKDF2_SHA256, PBKDF2_SHA1, BCRYPT_SHA256, BCRYPT] {
            let hash = StoredHash::parse(stored);
            assert_eq!(hash.matches_keyed(PASSWORD), Some(true), "{stored}");
            assert_eq!(hash.matches_keyed("correct horse"), Some(false), "{stored}");
        }
    }

    #[test]
    fn formats_are_told_apart_and_malformed_ones_are_unknown() {
        let kinds: Vec<&str> = [
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "argon2$argon2id$v=19$m=1024,t=1,p=2$c2FsdA$aGFzaA",
            PBKDF2_SHA256,
            PBKDF2_SHA1,
            BCRYPT_SHA256,
            BCRYPT,
            "!rHkL20CE6D1wFSbA6BCmmoVH0Svc0IYl8iQce63H",
            "md5$salt$hash",
            "pbkdf2_sha256$0$salt$aGFzaA==",
            "pbkdf2_sha256$99999999999$salt$aGFzaA==",
            "pbkdf2_sha256$1000$salt$not base64",
            "bcrypt$nope",
            "",
        ]
        .iter()
        .map(|stored| match StoredHash::parse(stored) {
            StoredHash::Argon2id => "argon2id",
            StoredHash::DjangoArgon2(_) => "django argon2",
            StoredHash::DjangoPbkdf2 { .. } => "pbkdf2",
            StoredHash::DjangoBcrypt { .. } => "bcrypt",
            StoredHash::Unusable => "unusable",
            StoredHash::Unknown => "unknown",
        })
        .collect();
        assert_eq!(
            kinds,
            [
                "argon2id",
                "django argon2",
                "pbkdf2",
                "pbkdf2",
                "bcrypt",
                "bcrypt",
                "unusable",
                "unknown",
                "unknown",
                "unknown",
                "unknown",
                "unknown",
                "unknown"
            ]
        );
    }
}
