//! Argon2id password hashing on a small pool of dedicated threads. A login storm queues for
//! them instead of starving the async workers that serve every other call, and memory stays
//! bounded: each thread allocates argon2's working area (19 MiB by default) once and reuses
//! it for every hash, where per-call allocation on the runtime's many blocking threads left
//! the allocator holding hundreds of MiB.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use secrecy::{ExposeSecret, SecretString};
use tracing::Span;

use super::{django_hashes::StoredHash, keyed_hash::constant_time_eq};
use crate::{config::HashingConfig, telemetry::Metrics};

/// Work for a hashing thread, given the thread's reusable argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Salt length, as the PHC recommends.
const SALT_LEN: usize = 16;
/// Hash output length.
const OUTPUT_LEN: usize = 32;

/// The hashing threads' niceness. Hashing is throughput work and every other call is
/// latency work: behind this the scheduler gives the async workers (and a database on the
/// same node) the CPU first, so a login storm slows logins, not refreshes and reads.
const HASHING_NICENESS: i32 = 10;

/// How long a caller refused by a full queue is told to wait.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full; try again after the wait.
    #[error("password hashing is saturated")]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// Hashing itself failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password matches; `needs_rehash` when the stored hash uses other parameters.
    Valid {
        /// Whether the stored hash should be replaced by one with current parameters.
        needs_rehash: bool,
    },
    /// The password does not match, or the account has no usable password.
    Invalid,
}

/// Hashes and verifies passwords with argon2id.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    metrics: Metrics,
    /// The bounded queue of the hashing threads; they stop when the last hasher is dropped.
    jobs: Arc<mpsc::SyncSender<Job>>,
    /// Verified against when the account does not exist, so unknown emails cost the same.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with the configured cost and concurrency.
    ///
    /// # Errors
    /// When the parameters are out of argon2's range.
    pub fn new(config: &HashingConfig, metrics: Metrics) -> anyhow::Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let dummy_hash = hash_blocking(
            &params,
            "not a real password: timing equaliser",
            &mut Vec::new(),
        )?;
        Ok(Self {
            params,
            metrics,
            jobs: Arc::new(start_threads(config.concurrency.max(1), config.queue)?),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password.
    ///
    /// # Errors
    /// `Busy` when the queue is full; `Failed` when hashing fails or the pool is gone.
    pub async fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.clone();
        Ok(self
            .run(move |memory| hash_blocking(&params, password.expose_secret(), memory))
            .await??)
    }

    /// Checks a password against a stored hash; with no hash, checks a dummy and fails.
    ///
    /// # Errors
    /// `Busy` when the queue is full; `Failed` when the pool is gone.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> Result<Verification, HashError> {
        let params = self.params.clone();
        let password = password.clone();
        let dummy = Arc::clone(&self.dummy_hash);
        let (hash, real) = match stored {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        self.run(move |memory| {
            let verification =
                verify_blocking(&params, password.expose_secret(), &hash, &dummy, memory);
            if real {
                verification
            } else {
                Verification::Invalid
            }
        })
        .await
    }
}

impl PasswordHasher {
    /// Runs `work` on a hashing thread, in the caller's span, recording how long it queued.
    /// A full queue refuses at once; a job whose caller has gone (cancelled, past its
    /// deadline) by the time a thread is free is dropped unhashed.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> R + Send + 'static,
    ) -> Result<R, HashError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let span = Span::current();
        let metrics = self.metrics.clone();
        let queued = Instant::now();
        let job: Job = Box::new(move |memory| {
            if reply.is_closed() {
                metrics.password_hash_skipped("abandoned");
                return;
            }
            metrics.password_hash_wait(queued.elapsed().as_secs_f64());
            let _ = reply.send(span.in_scope(|| work(memory)));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.metrics.password_hash_skipped("busy");
                return Err(HashError::Busy {
                    retry_after: BUSY_RETRY,
                });
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(anyhow::anyhow!("the hashing threads have stopped").into());
            }
        }
        result
            .await
            .map_err(|_| anyhow::anyhow!("a hashing thread failed").into())
    }
}

/// Starts `count` hashing threads sharing one queue of at most `queue` waiting jobs.
fn start_threads(count: usize, queue: usize) -> anyhow::Result<mpsc::SyncSender<Job>> {
    let (sender, receiver) = mpsc::sync_channel::<Job>(queue);
    let receiver = Arc::new(Mutex::new(receiver));
    for n in 0..count {
        let receiver = Arc::clone(&receiver);
        std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || {
                lower_this_threads_priority();
                let mut memory = Vec::new();
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let next = match receiver.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(&mut memory),
                        Err(_) => return,
                    }
                }
            })?;
    }
    Ok(sender)
}

/// Gives the calling thread [`HASHING_NICENESS`]; on Linux a niceness is per thread.
fn lower_this_threads_priority() {
    let this_thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(this_thread), HASHING_NICENESS) {
        tracing::warn!(%error, "could not lower a hashing thread's priority");
    }
}

/// A working area of at least `blocks` blocks, grown once and then reused.
fn working_area(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

fn hash_blocking(
    params: &Params,
    password: &str,
    memory: &mut Vec<Block>,
) -> anyhow::Result<String> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("argon2 hashing failed: {e}");
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| fail(&e))?;
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            working_area(memory, params.block_count()),
        )
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against `stored`, in whichever format it is (argon2id, or one of the
/// Django formats an import brought); a hash this build cannot check, or an unusable one,
/// is paid for with a check of `dummy`, so it answers no faster than a wrong password.
fn verify_blocking(
    params: &Params,
    password: &str,
    stored: &str,
    dummy: &str,
    memory: &mut Vec<Block>,
) -> Verification {
    let parsed = StoredHash::parse(stored);
    let matched = match &parsed {
        StoredHash::Argon2id => {
            return argon2_verify(password, stored, Some(params), memory)
                .unwrap_or(Verification::Invalid);
        }
        StoredHash::DjangoArgon2(phc) => {
            let outcome = argon2_verify(password, phc, None, memory);
            // Django's default wants 100 MiB; do not keep that for every later hash.
            let ours = params.block_count();
            if memory.len() > ours {
                memory.truncate(ours);
                memory.shrink_to_fit();
            }
            outcome.map(|v| matches!(v, Verification::Valid { .. }))
        }
        keyed => keyed.matches_keyed(password),
    };
    match matched {
        Some(true) => Verification::Valid { needs_rehash: true },
        Some(false) => Verification::Invalid,
        None => {
            argon2_verify(password, dummy, Some(params), memory);
            Verification::Invalid
        }
    }
}

/// Checks `password` against a PHC argon2 string; `None` when it does not parse. With
/// `current`, only argon2id is accepted and the answer says whether its parameters are
/// still the configured ones; without (Django's wrapping), any argon2 variant is.
fn argon2_verify(
    password: &str,
    stored: &str,
    current: Option<&Params>,
    memory: &mut Vec<Block>,
) -> Option<Verification> {
    let hash = PasswordHash::new(stored).ok()?;
    let (Some(salt), Some(expected), Ok(used)) = (&hash.salt, &hash.hash, Params::try_from(&hash))
    else {
        return None;
    };
    let version = Version::try_from(hash.version.unwrap_or(0x13)).ok()?;
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
    if current.is_some() && algorithm != Algorithm::Argon2id {
        return None;
    }
    let mut out = vec![0u8; expected.len()];
    let blocks = used.block_count();
    let computed = Argon2::new(algorithm, version, used.clone()).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        working_area(memory, blocks),
    );
    if computed.is_err() || !constant_time_eq(&out, expected.as_bytes()) {
        return Some(Verification::Invalid);
    }
    let up_to_date = current.is_some_and(|params| {
        version == Version::V0x13
            && used.m_cost() == params.m_cost()
            && used.t_cost() == params.t_cost()
            && used.p_cost() == params.p_cost()
    });
    Some(Verification::Valid {
        needs_rehash: !up_to_date,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::{PasswordHasher, Verification};
    use crate::config::HashingConfig;

    fn hasher(memory_kib: u32) -> PasswordHasher {
        PasswordHasher::new(
            &HashingConfig {
                memory_kib,
                iterations: 1,
                parallelism: 1,
                concurrency: 2,
                queue: 8,
            },
            crate::telemetry::Metrics::new().unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn verifies_and_asks_for_rehash_when_parameters_change() {
        let password = SecretString::from("correct horse battery");
        let old = hasher(1024);
        let hash = old.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_eq!(
            old.verify(&password, Some(&hash)).await.unwrap(),
            Verification::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher(2048).verify(&password, Some(&hash)).await.unwrap(),
            Verification::Valid { needs_rehash: true }
        );
        // Interchangeable with the reference implementation's PHC strings, both ways.
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let reference = argon2::Argon2::default();
        assert!(
            reference
                .verify_password(
                    b"correct horse battery",
                    &argon2::PasswordHash::new(&hash).unwrap()
                )
                .is_ok()
        );
        let theirs = reference
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(matches!(
            old.verify(&password, Some(&theirs)).await.unwrap(),
            Verification::Valid { .. }
        ));
        let wrong = SecretString::from("wrong horse battery");
        assert_eq!(
            old.verify(&wrong, Some(&hash)).await.unwrap(),
            Verification::Invalid
        );
        assert_eq!(
            old.verify(&password, None).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn django_hashes_verify_and_always_ask_for_rehash() {
        // Made by Django 5.1's Argon2PasswordHasher (cheap parameters) and PBKDF2PasswordHasher.
        let password = SecretString::from("correct horse battery staple ünïcode");
        let django_argon2 = "argon2$argon2id$v=19$m=1024,t=1,p=2$SHhpY3dQTEk5RjMxZmcyUVcyUURxNA$vZRzCYTNmVi+yo7bJbYt22pi6nubjMKSSIBDVWE2joY";
        let pbkdf2 = "pbkdf2_sha256$1000$N3YY7ySvzEuLpyC8kSPGOv$vrS4iYw/dFf6/DAx/cz2Quisw72bthTbFT/kQ0y+Ueo=";
        let hasher = hasher(1024);
        for stored in [django_argon2, pbkdf2] {
            assert_eq!(
                hasher.verify(&password, Some(stored)).await.unwrap(),
                Verification::Valid { needs_rehash: true },
                "{stored}"
            );
            let wrong = SecretString::from("correct horse battery staple");
            assert_eq!(
                hasher.verify(&wrong, Some(stored)).await.unwrap(),
                Verification::Invalid
            );
        }
        for unusable in ["!rHkL20CE6D1wFSbA6BCmmoVH0Svc0IYl8iQce63H", "md5$s$h", ""] {
            assert_eq!(
                hasher.verify(&password, Some(unusable)).await.unwrap(),
                Verification::Invalid
            );
        }
    }
}
