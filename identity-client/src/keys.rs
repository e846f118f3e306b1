//! The published key set, cached: replaced on a timer, and refetched when a token names a
//! key the cache lacks, at most once per interval however many such tokens arrive.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::DecodingKey;
use tokio::sync::Mutex;

use crate::pb;

/// The keys by `kid`, and when an unknown `kid` last caused a fetch.
pub(crate) struct KeyCache {
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// Held while a fetch runs, so concurrent misses share one; holds the last miss fetch.
    last_miss_fetch: Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
}

/// The usable keys of a JWKS answer: Ed25519 signing keys with a `kid`.
pub(crate) fn decoding_keys(jwks: &pb::GetJwksResponse) -> HashMap<String, DecodingKey> {
    jwks.keys
        .iter()
        .filter(|key| key.kty == "OKP" && key.crv == "Ed25519" && !key.kid.is_empty())
        .filter(|key| key.r#use.is_empty() || key.r#use == "sig")
        .filter_map(|key| {
            let decoding = DecodingKey::from_ed_components(&key.x).ok()?;
            Some((key.kid.clone(), decoding))
        })
        .collect()
}

impl KeyCache {
    pub(crate) fn new(keys: HashMap<String, DecodingKey>, min_refetch_interval: Duration) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            last_miss_fetch: Mutex::new(None),
            min_refetch_interval,
        }
    }

    /// The cached key named `kid`.
    pub(crate) fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.snapshot().get(kid).cloned()
    }

    fn snapshot(&self) -> Arc<HashMap<String, DecodingKey>> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the cached set.
    pub(crate) fn replace(&self, keys: HashMap<String, DecodingKey>) {
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut held) => *held = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// The key named `kid`, fetching the set once if it is not cached and no miss has
    /// fetched within the interval; `fetch` is what asks the server.
    pub(crate) async fn find<F, Fut>(&self, kid: &str, fetch: F) -> Option<DecodingKey>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<HashMap<String, DecodingKey>>>,
    {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last = self.last_miss_fetch.lock().await;
        // Another miss may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return None;
        }
        *last = Some(Instant::now());
        if let Some(keys) = fetch().await {
            self.replace(keys);
        }
        self.cached(kid)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::KeyCache;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_unknown_kids_at_once_cause_one_fetch_per_interval() {
        let cache = Arc::new(KeyCache::new(HashMap::new(), Duration::from_secs(60)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut misses = tokio::task::JoinSet::new();
        for n in 0..20 {
            let (cache, fetches) = (Arc::clone(&cache), Arc::clone(&fetches));
            misses.spawn(async move {
                let fetch = || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some(HashMap::new())
                };
                cache.find(&format!("forged-{n}"), fetch).await.is_none()
            });
        }
        while let Some(refused) = misses.join_next().await {
            assert!(matches!(refused, Ok(true)));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
