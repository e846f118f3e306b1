//! Access tokens whose signature already checked out, so a client presenting its token
//! again costs a lookup instead of an Ed25519 verification, which is most of the CPU of a
//! bearer-authenticated call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use super::tokens::VerifiedAccess;

/// How many tokens are remembered at most (about 3 MiB of them); when the memory is full it
/// starts over.
const CAPACITY: usize = 4096;

/// What checking a token's signature established: the key that signed it and what it says.
/// Nothing here depends on the clock or on the key set's schedule; both are checked again
/// at every use.
pub(super) struct Verified {
    pub(super) kid: String,
    pub(super) access: VerifiedAccess,
}

/// A bounded memory of verified tokens, keyed by the whole token, so a hit is exactly the
/// bytes that were verified. Only genuine tokens get in: a forged or altered one fails its
/// check and is never remembered.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Arc<Verified>>>,
}

impl VerifiedTokens {
    /// What was established for exactly `token`, if it was verified before.
    pub(super) fn get(&self, token: &str) -> Option<Arc<Verified>> {
        self.lock().get(token).cloned()
    }

    /// Remembers `verified` for `token`.
    pub(super) fn remember(&self, token: &str, verified: Verified) -> Arc<Verified> {
        let verified = Arc::new(verified);
        let mut entries = self.lock();
        let forgotten = (entries.len() >= CAPACITY).then(|| std::mem::take(&mut *entries));
        entries.insert(token.into(), Arc::clone(&verified));
        drop(entries);
        // The old entries are freed after the lock is released.
        drop(forgotten);
        verified
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Verified>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{CAPACITY, Verified, VerifiedTokens};
    use crate::{
        auth::tokens::{AccessClaims, VerifiedAccess},
        domain::{SessionId, UserId},
    };

    fn verified(kid: &str) -> Verified {
        let session_id = SessionId::generate();
        Verified {
            kid: kid.into(),
            access: VerifiedAccess {
                user_id: UserId::parse(1).unwrap(),
                claims: AccessClaims {
                    sub: "1".into(),
                    email: "a@example.com".into(),
                    token_type: "access".into(),
                    jti: "j".into(),
                    iat: 0,
                    exp: 1,
                    iss: "identity".into(),
                    aud: "services".into(),
                    sid: session_id.as_str().into(),
                    aal: "aal1".into(),
                    amr: vec!["pwd".into()],
                    auth_time: 0,
                },
                session_id,
            },
        }
    }

    #[test]
    fn remembers_exact_tokens_and_stays_bounded() {
        let memory = VerifiedTokens::default();
        memory.remember("token-a", verified("k1"));
        assert_eq!(memory.get("token-a").unwrap().kid, "k1");
        assert!(memory.get("token-A").is_none());
        assert!(memory.get("token-a ").is_none());
        for n in 0..CAPACITY * 2 {
            memory.remember(&format!("token-{n}"), verified("k1"));
        }
        assert!(memory.lock().len() <= CAPACITY);
        assert!(memory.get(&format!("token-{}", CAPACITY * 2 - 1)).is_some());
    }
}
