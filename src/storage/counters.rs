//! Queries on `counters`: fixed-window budgets, cooldowns and failure back-off shared by replicas.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, StoreError, models::CounterRow, on_backend, schema::counters};

/// How many hits a bucket allows.
#[derive(Debug, Clone, Copy)]
pub struct CounterPolicy {
    /// Length of the fixed window.
    pub window: Duration,
    /// Hits allowed per window.
    pub max_hits: u32,
    /// Minimum time between two hits.
    pub cooldown: Duration,
}

fn before(now: NaiveDateTime, span: Duration) -> NaiveDateTime {
    now - chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX)
}

fn wait_until(now: NaiveDateTime, then: NaiveDateTime) -> Duration {
    (then - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

impl Queries<'_> {
    /// Takes one hit from `bucket` if its policy allows; otherwise says how long to wait.
    ///
    /// # Errors
    /// On database failure.
    pub async fn take_hit(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
        policy: CounterPolicy,
    ) -> Result<Result<(), Duration>, StoreError> {
        let window_cutoff = before(now, policy.window);
        let cooldown_cutoff = before(now, policy.cooldown);
        let max_hits = i32::try_from(policy.max_hits).unwrap_or(i32::MAX);
        // The common case is one conditional update: atomic across replicas.
        let taken = on_backend!(self, |conn| {
            diesel::update(
                counters::table
                    .find(bucket)
                    .filter(counters::window_started_at.gt(window_cutoff))
                    .filter(counters::hits.lt(max_hits))
                    .filter(counters::last_hit_at.le(cooldown_cutoff)),
            )
            .set((
                counters::hits.eq(counters::hits + 1),
                counters::last_hit_at.eq(now),
            ))
            .execute(conn)
            .await
        })?;
        if taken == 1 {
            return Ok(Ok(()));
        }
        let existing = self.counter(bucket).await?;
        if let Some(row) = &existing {
            if policy.cooldown > Duration::ZERO && row.last_hit_at > cooldown_cutoff {
                let ready = row.last_hit_at
                    + chrono::Duration::from_std(policy.cooldown).unwrap_or_default();
                return Ok(Err(wait_until(now, ready)));
            }
            if row.window_started_at > window_cutoff {
                let ready = row.window_started_at
                    + chrono::Duration::from_std(policy.window).unwrap_or_default();
                return Ok(Err(wait_until(now, ready)));
            }
        }
        self.restart_window(bucket, now, 1).await?;
        Ok(Ok(()))
    }

    /// Adds one failure to `bucket` (restarting a window older than `window`) and returns the count.
    ///
    /// # Errors
    /// On database failure.
    pub async fn add_failure(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
        window: Duration,
    ) -> Result<u32, StoreError> {
        let window_cutoff = before(now, window);
        let hits: Option<i32> = on_backend!(self, |conn| {
            diesel::update(
                counters::table
                    .find(bucket)
                    .filter(counters::window_started_at.gt(window_cutoff)),
            )
            .set((
                counters::hits.eq(counters::hits + 1),
                counters::last_hit_at.eq(now),
            ))
            .returning(counters::hits)
            .get_result(conn)
            .await
            .optional()
        })?;
        match hits {
            Some(hits) => Ok(u32::try_from(hits).unwrap_or(0)),
            None => {
                self.restart_window(bucket, now, 1).await?;
                Ok(1)
            }
        }
    }

    /// Refuses `bucket` until `until`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn block_until(
        &mut self,
        bucket: &str,
        until: NaiveDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::update(counters::table.find(bucket))
                .set(counters::blocked_until.eq(until))
                .execute(conn)
                .await
        })?;
        Ok(())
    }

    /// When `bucket` is blocked until, if it is blocked after `now`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn blocked_until(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Duration>, StoreError> {
        Ok(self
            .counter(bucket)
            .await?
            .and_then(|row| row.blocked_until)
            .filter(|until| *until > now)
            .map(|until| wait_until(now, until)))
    }

    /// Forgets `bucket`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn clear_counter(&mut self, bucket: &str) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::delete(counters::table.find(bucket))
                .execute(conn)
                .await
        })?;
        Ok(())
    }

    async fn counter(&mut self, bucket: &str) -> Result<Option<CounterRow>, StoreError> {
        let row = on_backend!(self, |conn| {
            counters::table
                .find(bucket)
                .select(CounterRow::as_select())
                .first(conn)
                .await
                .optional()
        })?;
        Ok(row)
    }

    async fn restart_window(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
        hits: i32,
    ) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::insert_into(counters::table)
                .values((
                    counters::bucket.eq(bucket),
                    counters::window_started_at.eq(now),
                    counters::hits.eq(hits),
                    counters::last_hit_at.eq(now),
                ))
                .on_conflict(counters::bucket)
                .do_update()
                .set((
                    counters::window_started_at.eq(now),
                    counters::hits.eq(hits),
                    counters::last_hit_at.eq(now),
                    counters::blocked_until.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)
                .await
        })?;
        Ok(())
    }
}
