//! Queries on `counters`: fixed-window budgets, cooldowns and failure back-off shared by replicas.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, StoreError, models::CounterRow, on_backend, schema::counters};
use crate::clock::span;

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

fn before(now: NaiveDateTime, window: Duration) -> NaiveDateTime {
    // SQLite compares timestamps as text, so stay within four-digit years.
    now.checked_sub_signed(span(window))
        .unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc())
}

fn far_future(now: NaiveDateTime) -> NaiveDateTime {
    now.checked_add_signed(chrono::Duration::days(365 * 100))
        .unwrap_or(now)
}

/// Whole seconds until `then`, rounded up (at least one): a client that waits exactly what
/// it was told is not refused again.
fn wait_until(now: NaiveDateTime, then: NaiveDateTime) -> Duration {
    let left = (then - now).to_std().unwrap_or(Duration::ZERO);
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// Rounds of optimistic retries when replicas race on one bucket.
const RACE_ROUNDS: usize = 4;
/// Rounds of [`Queries::reserve_attempt`]: each lost round means another reservation won,
/// so a burst settles (reserved or refused) within a few more rounds than it has winners.
const RESERVATION_ROUNDS: usize = 12;

impl Queries<'_> {
    /// Takes one hit from `bucket` if its policy allows; otherwise says how long to wait.
    /// Every write is conditional, so racing replicas can neither overspend nor reset a window.
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
        // With no cooldown, hits stamped a moment later by another replica must not block this one.
        let cooldown_cutoff = if policy.cooldown.is_zero() {
            far_future(now)
        } else {
            before(now, policy.cooldown)
        };
        let max_hits = i32::try_from(policy.max_hits).unwrap_or(i32::MAX);
        for _ in 0..RACE_ROUNDS {
            let taken = on_backend!(self, conn => {
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
            let Some(row) = self.counter(bucket).await? else {
                if self.insert_counter(bucket, now).await? {
                    return Ok(Ok(()));
                }
                continue;
            };
            if row.last_hit_at > cooldown_cutoff {
                return Ok(Err(wait_until(
                    now,
                    row.last_hit_at + span(policy.cooldown),
                )));
            }
            if row.window_started_at <= window_cutoff {
                if self
                    .restart_expired_window(bucket, now, window_cutoff)
                    .await?
                {
                    return Ok(Ok(()));
                }
                continue;
            }
            if row.hits >= max_hits {
                return Ok(Err(wait_until(
                    now,
                    row.window_started_at + span(policy.window),
                )));
            }
        }
        // Still contended after several rounds: ask the caller to come back shortly.
        Ok(Err(Duration::from_secs(1)))
    }

    /// Gives back the hit [`Self::take_hit`] took at `at`, while it is still the bucket's
    /// latest: the count drops by one and the cooldown it opened lifts. A hit another call
    /// took since keeps the count and its cooldown.
    ///
    /// # Errors
    /// On database failure.
    pub async fn refund_hit(
        &mut self,
        bucket: &str,
        at: NaiveDateTime,
        policy: CounterPolicy,
    ) -> Result<(), StoreError> {
        // Postgres keeps microseconds (rounded), SQLite every digit.
        let tolerance = chrono::Duration::microseconds(1);
        let ours = counters::table
            .find(bucket)
            .filter(counters::last_hit_at.between(at - tolerance, at + tolerance))
            .filter(counters::hits.gt(0));
        on_backend!(self, conn => {
            diesel::update(ours)
                .set((
                    counters::hits.eq(counters::hits - 1),
                    counters::last_hit_at.eq(before(at, policy.cooldown)),
                ))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Reserves the next attempt of `bucket` before the secret it guards is checked, so
    /// attempts that arrive at once are counted at once, and returns its number in the
    /// window. After reserving the `n`th attempt the bucket refuses more for
    /// `block_after(n)`, if that says so; a reservation made while it refuses fails with the
    /// wait. A failure leaves its attempt counted; a success
    /// [gives it back](Self::release_attempt).
    ///
    /// # Errors
    /// On database failure.
    pub async fn reserve_attempt(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
        window: Duration,
        block_after: impl Fn(u32) -> Option<Duration>,
    ) -> Result<Result<u32, Duration>, StoreError> {
        let window_cutoff = before(now, window);
        let blocked_until = |n: u32| block_after(n).map(|delay| now + span(delay));
        for round in 0..=RESERVATION_ROUNDS {
            // Most reservations meet no row (a success forgets the count): the first round
            // tries the insert alone, and reads the row only when one is there.
            let row = if round == 0 {
                None
            } else {
                self.counter(bucket).await?
            };
            let Some(row) = row else {
                if self.insert_counter(bucket, now).await? {
                    if let Some(until) = blocked_until(1) {
                        self.block_until(bucket, until).await?;
                    }
                    return Ok(Ok(1));
                }
                continue;
            };
            if let Some(until) = row.blocked_until.filter(|until| *until > now) {
                return Ok(Err(wait_until(now, until)));
            }
            let (hits, started) = if row.window_started_at <= window_cutoff {
                (0, now)
            } else {
                (row.hits, row.window_started_at)
            };
            let next = u32::try_from(hits).unwrap_or(0).saturating_add(1);
            // Compare-and-set on the row as it was read: of racing reservations one wins,
            // and the others read again.
            let unchanged = counters::table
                .find(bucket)
                .filter(counters::hits.eq(row.hits))
                .filter(counters::window_started_at.eq(row.window_started_at));
            let reserved = on_backend!(self, conn => {
                diesel::update(unchanged)
                    .set((
                        counters::hits.eq(i32::try_from(next).unwrap_or(i32::MAX)),
                        counters::window_started_at.eq(started),
                        counters::last_hit_at.eq(now),
                        counters::blocked_until.eq(blocked_until(next)),
                    ))
                    .execute(conn)
                    .await
                    .map(|changed| changed == 1)
            })?;
            if reserved {
                return Ok(Ok(next));
            }
        }
        // Still contended after several rounds: ask the caller to come back shortly.
        Ok(Err(Duration::from_secs(1)))
    }

    /// Refuses `bucket` until `until`.
    async fn block_until(&mut self, bucket: &str, until: NaiveDateTime) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::update(counters::table.find(bucket))
                .set(counters::blocked_until.eq(until))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Gives back a reserved attempt that succeeded. When it is still the bucket's latest,
    /// the count is forgotten (a success clears earlier failures); when others were reserved
    /// beside it, only its own attempt is returned, and a back-off lifts if what is left is
    /// within `free` (so concurrent successes never lock an account out, and a burst of
    /// guesses keeps its count).
    ///
    /// # Errors
    /// On database failure.
    pub async fn release_attempt(
        &mut self,
        bucket: &str,
        attempt: u32,
        free: u32,
    ) -> Result<(), StoreError> {
        let latest = counters::table
            .find(bucket)
            .filter(counters::hits.eq(i32::try_from(attempt).unwrap_or(i32::MAX)));
        let forgotten = on_backend!(self, conn => {
            diesel::delete(latest)
                .execute(conn)
                .await
                .map(|deleted| deleted == 1)
        })?;
        if forgotten {
            return Ok(());
        }
        let left = self.give_back_hit(bucket).await?;
        if left.is_some_and(|left| left <= free) {
            let within = counters::table
                .find(bucket)
                .filter(counters::hits.le(i32::try_from(free).unwrap_or(i32::MAX)));
            on_backend!(self, conn => {
                diesel::update(within)
                    .set(counters::blocked_until.eq(None::<NaiveDateTime>))
                    .execute(conn)
                    .await
            })?;
        }
        Ok(())
    }

    /// Gives back one hit of `bucket`, whichever call took it: one that succeeded need not
    /// count against those that follow. Returns how many are left, if the bucket had any.
    ///
    /// # Errors
    /// On database failure.
    pub async fn give_back_hit(&mut self, bucket: &str) -> Result<Option<u32>, StoreError> {
        let counted = counters::table.find(bucket).filter(counters::hits.gt(0));
        let left: Option<i32> = on_backend!(self, conn => {
            diesel::update(counted)
                .set(counters::hits.eq(counters::hits - 1))
                .returning(counters::hits)
                .get_result(conn)
                .await
                .optional()
        })?;
        Ok(left.map(|left| u32::try_from(left).unwrap_or(0)))
    }

    /// Forgets `bucket`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn clear_counter(&mut self, bucket: &str) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::delete(counters::table.find(bucket))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    async fn counter(&mut self, bucket: &str) -> Result<Option<CounterRow>, StoreError> {
        on_backend!(self, conn => {
            counters::table
                .find(bucket)
                .select(CounterRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Creates the bucket with one hit; `false` when another writer created it first.
    async fn insert_counter(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(counters::table)
                .values((
                    counters::bucket.eq(bucket),
                    counters::window_started_at.eq(now),
                    counters::hits.eq(1),
                    counters::last_hit_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Starts a new window with one hit if the current one ended; `false` when another writer did first.
    async fn restart_expired_window(
        &mut self,
        bucket: &str,
        now: NaiveDateTime,
        window_cutoff: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::update(
                counters::table
                    .find(bucket)
                    .filter(counters::window_started_at.le(window_cutoff)),
            )
            .set((
                counters::window_started_at.eq(now),
                counters::hits.eq(1),
                counters::last_hit_at.eq(now),
                counters::blocked_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)
            .await
            .map(|changed| changed == 1)
        })
    }
}
