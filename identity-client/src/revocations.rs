//! The revocations the server has streamed: sessions whose tokens are void, and per user an
//! instant before which every token is void. Entries are forgotten once no token they void
//! can still be live.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{VerifiedToken, pb, pb::watch_revocations_response::Revoked};

/// What has been revoked, and where the stream resumes.
pub(crate) struct Revocations {
    sessions: HashMap<String, Instant>,
    /// User id to "not valid before" (seconds since the epoch), and when it arrived.
    users: HashMap<i64, (i64, Instant)>,
    /// The cursor of the last revocation applied; empty before the first.
    cursor: String,
    /// How long an entry is kept: at least the server's access-token lifetime.
    retention: Duration,
    last_pruned: Instant,
    /// When the server last said the stream had caught up.
    caught_up_at: Instant,
}

impl Revocations {
    pub(crate) fn new(retention: Duration) -> Self {
        Self {
            sessions: HashMap::new(),
            users: HashMap::new(),
            cursor: String::new(),
            retention,
            last_pruned: Instant::now(),
            caught_up_at: Instant::now(),
        }
    }

    /// How long ago the server last said every revocation had been sent.
    pub(crate) fn staleness(&self) -> Duration {
        self.caught_up_at.elapsed()
    }

    /// Where a reconnecting stream resumes.
    pub(crate) fn cursor(&self) -> String {
        self.cursor.clone()
    }

    /// Records one streamed revocation.
    pub(crate) fn apply(&mut self, revocation: pb::WatchRevocationsResponse) {
        let now = Instant::now();
        if revocation.caught_up {
            self.caught_up_at = now;
        }
        match revocation.revoked {
            Some(Revoked::SessionId(session_id)) => {
                self.sessions.insert(session_id, now);
            }
            Some(Revoked::User(user)) => {
                let entry = self.users.entry(user.user_id).or_insert((i64::MIN, now));
                *entry = (entry.0.max(user.not_valid_before), now);
            }
            // A caught-up message revokes nothing.
            None => {}
        }
        if !revocation.cursor.is_empty() {
            self.cursor = revocation.cursor;
        }
        if now.duration_since(self.last_pruned) >= self.retention / 10 {
            self.prune(now);
        }
    }

    fn prune(&mut self, now: Instant) {
        let retention = self.retention;
        self.sessions
            .retain(|_, arrived| now.duration_since(*arrived) < retention);
        self.users
            .retain(|_, (_, arrived)| now.duration_since(*arrived) < retention);
        self.last_pruned = now;
    }

    /// Whether `token` has been revoked.
    pub(crate) fn voids(&self, token: &VerifiedToken) -> bool {
        self.sessions.contains_key(&token.session_id)
            || self
                .users
                .get(&token.user_id)
                .is_some_and(|(not_valid_before, _)| token.issued_at < *not_valid_before)
    }
}

#[cfg(test)]
mod tests {
    use super::Revocations;
    use crate::{VerifiedToken, pb, pb::watch_revocations_response::Revoked};
    use std::time::Duration;

    fn token(user_id: i64, session_id: &str, issued_at: i64) -> VerifiedToken {
        VerifiedToken {
            user_id,
            session_id: session_id.into(),
            email: "a@example.com".into(),
            token_id: "jti".into(),
            issued_at,
            expires_at: issued_at + 300,
            aal: "aal1".into(),
            amr: vec!["pwd".into()],
            auth_time: issued_at,
        }
    }

    fn entry(cursor: &str, revoked: Revoked) -> pb::WatchRevocationsResponse {
        pb::WatchRevocationsResponse {
            cursor: cursor.into(),
            revoked: Some(revoked),
            caught_up: false,
        }
    }

    #[test]
    fn a_revoked_session_voids_its_tokens_and_no_other() {
        let mut revocations = Revocations::new(Duration::from_secs(3600));
        revocations.apply(entry("7", Revoked::SessionId("s1".into())));
        assert!(revocations.voids(&token(1, "s1", 100)));
        assert!(!revocations.voids(&token(1, "s2", 100)));
        assert_eq!(revocations.cursor(), "7");
    }

    #[test]
    fn not_valid_before_voids_earlier_tokens_and_never_moves_back() {
        let mut revocations = Revocations::new(Duration::from_secs(3600));
        let user = |not_valid_before| {
            Revoked::User(pb::UserNotValidBefore {
                user_id: 4,
                not_valid_before,
            })
        };
        revocations.apply(entry("1", user(1000)));
        revocations.apply(entry("2", user(900)));
        assert!(revocations.voids(&token(4, "s", 999)));
        assert!(!revocations.voids(&token(4, "s", 1000)));
        assert!(!revocations.voids(&token(5, "s", 1)));
    }

    #[test]
    fn entries_older_than_the_retention_are_forgotten() {
        let mut revocations = Revocations::new(Duration::ZERO);
        revocations.apply(entry("1", Revoked::SessionId("old".into())));
        revocations.apply(entry("2", Revoked::SessionId("new".into())));
        assert!(!revocations.voids(&token(1, "old", 1)));
    }
}
