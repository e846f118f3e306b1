//! Argon2id password hashing on a small pool of dedicated threads. A login storm queues for
//! them instead of starving the async workers that serve every other call, and memory stays
//! bounded: each thread reuses its own allocator arena for argon2's 19 MiB working area,
//! where the runtime's many blocking threads would each keep one.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::Instant,
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use secrecy::{ExposeSecret, SecretString};
use tracing::Span;

use crate::{config::HashingConfig, telemetry::Metrics};

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

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
    /// The queue of the hashing threads; they stop when the last hasher is dropped.
    jobs: Arc<mpsc::Sender<Job>>,
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
        let dummy_hash = hash_blocking(&params, "not a real password: timing equaliser")?;
        Ok(Self {
            params,
            metrics,
            jobs: Arc::new(start_threads(config.concurrency.max(1))?),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password.
    ///
    /// # Errors
    /// When hashing fails or the pool is gone.
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move || hash_blocking(&params, password.expose_secret()))
            .await?
    }

    /// Checks a password against a stored hash; with no hash, checks a dummy and fails.
    ///
    /// # Errors
    /// When the pool is gone.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> anyhow::Result<Verification> {
        let params = self.params.clone();
        let password = password.clone();
        let (hash, real) = match stored {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        self.run(move || {
            let verification = verify_blocking(&params, password.expose_secret(), &hash);
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
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let span = Span::current();
        let metrics = self.metrics.clone();
        let queued = Instant::now();
        let job: Job = Box::new(move || {
            metrics.password_hash_wait(queued.elapsed().as_secs_f64());
            // The caller may have gone (deadline); the result is then dropped.
            let _ = reply.send(span.in_scope(work));
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the hashing threads have stopped"))?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("a hashing thread failed"))
    }
}

/// Starts `count` hashing threads sharing one queue.
fn start_threads(count: usize) -> anyhow::Result<mpsc::Sender<Job>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for n in 0..count {
        let receiver = Arc::clone(&receiver);
        std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let next = match receiver.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
    }
    Ok(sender)
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> anyhow::Result<String> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

fn verify_blocking(params: &Params, password: &str, stored: &str) -> Verification {
    let Ok(hash) = PasswordHash::new(stored) else {
        return Verification::Invalid;
    };
    if argon2(params)
        .verify_password(password.as_bytes(), &hash)
        .is_err()
    {
        return Verification::Invalid;
    }
    let current = hash.algorithm.as_str() == "argon2id"
        && hash.version == Some(0x13)
        && Params::try_from(&hash).is_ok_and(|used| {
            used.m_cost() == params.m_cost()
                && used.t_cost() == params.t_cost()
                && used.p_cost() == params.p_cost()
        });
    Verification::Valid {
        needs_rehash: !current,
    }
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
}
