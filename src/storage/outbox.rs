//! Queries on `outbox`: enqueue in the caller's transaction; claim, complete or retry in the worker.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{NewEmail, OutboxRow, Queries, StoreError, on_backend, schema::outbox};

impl Queries<'_> {
    /// Queues an email, inside the transaction of the change that needs it (whose commit
    /// wakes the outbox: see [`Queries::queued_mail`]).
    ///
    /// # Errors
    /// On database failure, or outside a transaction.
    pub async fn enqueue_email(&mut self, email: &NewEmail) -> Result<(), StoreError> {
        self.queueing_mail()?;
        on_backend!(self, conn => {
            diesel::insert_into(outbox::table)
                .values(email)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// How many emails are neither delivered nor abandoned, and when the oldest of them was
    /// queued.
    ///
    /// # Errors
    /// On database failure.
    pub async fn pending_emails(&mut self) -> Result<(i64, Option<NaiveDateTime>), StoreError> {
        on_backend!(self, conn => {
            outbox::table
                .filter(outbox::sent_at.is_null())
                .filter(outbox::gave_up_at.is_null())
                .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
                .get_result(conn)
                .await
        })
    }

    /// Ids of up to `limit` emails that are due and not claimed by a live worker.
    ///
    /// # Errors
    /// On database failure.
    pub async fn due_email_ids(
        &mut self,
        now: NaiveDateTime,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, conn => {
            outbox::table
                .filter(outbox::sent_at.is_null())
                .filter(outbox::gave_up_at.is_null())
                .filter(outbox::next_attempt_at.le(now))
                .filter(
                    outbox::locked_until
                        .is_null()
                        .or(outbox::locked_until.lt(now)),
                )
                .order(outbox::id.asc())
                .limit(limit)
                .select(outbox::id)
                .load(conn)
                .await
        })
    }

    /// Claims one due email until `lease_until` and counts the attempt; `None` when another
    /// worker got it first. The conditional update is the lock: exactly one claimant wins.
    ///
    /// # Errors
    /// On database failure.
    pub async fn claim_email(
        &mut self,
        id: i64,
        now: NaiveDateTime,
        lease_until: NaiveDateTime,
    ) -> Result<Option<OutboxRow>, StoreError> {
        on_backend!(self, conn => {
            diesel::update(
                outbox::table
                    .find(id)
                    .filter(outbox::sent_at.is_null())
                    .filter(outbox::gave_up_at.is_null())
                    .filter(
                        outbox::locked_until
                            .is_null()
                            .or(outbox::locked_until.lt(now)),
                    ),
            )
            .set((
                outbox::locked_until.eq(lease_until),
                outbox::attempts.eq(outbox::attempts + 1),
            ))
            .returning(OutboxRow::as_returning())
            .get_result(conn)
            .await
            .optional()
        })
    }

    /// Records a delivery and forgets the body: the codes and links it carried are not kept.
    ///
    /// # Errors
    /// On database failure.
    pub async fn mark_email_sent(&mut self, id: i64, now: NaiveDateTime) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::update(outbox::table.find(id))
                .set((
                    outbox::sent_at.eq(now),
                    outbox::locked_until.eq(None::<NaiveDateTime>),
                    outbox::body_text.eq(""),
                    outbox::body_html.eq(""),
                ))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Records a failed delivery: retried from `retry_at`, or abandoned (and its body
    /// forgotten) when `retry_at` is `None`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn mark_email_failed(
        &mut self,
        id: i64,
        error: &str,
        now: NaiveDateTime,
        retry_at: Option<NaiveDateTime>,
    ) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::update(outbox::table.find(id))
                .set((
                    outbox::last_error.eq(error),
                    outbox::locked_until.eq(None::<NaiveDateTime>),
                    outbox::next_attempt_at.eq(retry_at.unwrap_or(now)),
                    outbox::gave_up_at.eq(if retry_at.is_none() { Some(now) } else { None }),
                ))
                .execute(conn)
                .await
        })?;
        if retry_at.is_none() {
            on_backend!(self, conn => {
                diesel::update(outbox::table.find(id))
                    .set((outbox::body_text.eq(""), outbox::body_html.eq("")))
                    .execute(conn)
                    .await
            })?;
        }
        Ok(())
    }

    /// Deletes state that can no longer matter: counters whose window and block ended before
    /// `cutoff`, sessions, address changes, second-factor challenges, emailed sign-in codes, WebAuthn ceremonies and
    /// pending factors that expired before it, finished emails and
    /// revocations older than it (no access token they could void lives that long),
    /// accounts still unproven that were made before `unverified_cutoff` (with everything
    /// of theirs), and audit events older than `audit_cutoff`. Returns how many rows went.
    ///
    /// # Errors
    /// On database failure.
    pub async fn purge_expired(
        &mut self,
        cutoff: NaiveDateTime,
        unverified_cutoff: NaiveDateTime,
        audit_cutoff: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        use super::schema::{
            audit_events, counters, email_changes, email_sign_ins, factors, mfa_challenges,
            revocations, sessions, users, webauthn_ceremonies,
        };
        on_backend!(self, conn => {
            let counters = diesel::delete(
                counters::table
                    .filter(counters::window_started_at.lt(cutoff))
                    .filter(
                        counters::blocked_until
                            .is_null()
                            .or(counters::blocked_until.lt(cutoff)),
                    ),
            )
            .execute(conn)
            .await?;
            let unverified = diesel::delete(
                users::table
                    .filter(users::is_verified.eq(false))
                    .filter(users::date_joined.lt(unverified_cutoff)),
            )
            .execute(conn)
            .await?;
            let sessions = diesel::delete(sessions::table.filter(sessions::expires_at.lt(cutoff)))
                .execute(conn)
                .await?;
            let revoked = diesel::delete(revocations::table.filter(revocations::created_at.lt(cutoff)))
                .execute(conn)
                .await?;
            let emails = diesel::delete(
                outbox::table.filter(outbox::sent_at.lt(cutoff).or(outbox::gave_up_at.lt(cutoff))),
            )
            .execute(conn)
            .await?;
            let changes =
                diesel::delete(email_changes::table.filter(email_changes::expires_at.lt(cutoff)))
                    .execute(conn)
                    .await?;
            let audited = diesel::delete(
                audit_events::table.filter(audit_events::occurred_at.lt(audit_cutoff)),
            )
            .execute(conn)
            .await?;
            let challenges =
                diesel::delete(mfa_challenges::table.filter(mfa_challenges::expires_at.lt(cutoff)))
                    .execute(conn)
                    .await?;
            let ceremonies = diesel::delete(
                webauthn_ceremonies::table.filter(webauthn_ceremonies::expires_at.lt(cutoff)),
            )
            .execute(conn)
            .await?;
            let sign_ins =
                diesel::delete(email_sign_ins::table.filter(email_sign_ins::expires_at.lt(cutoff)))
                    .execute(conn)
                    .await?;
            let lapsed = diesel::delete(
                factors::table
                    .filter(factors::confirmed_at.is_null())
                    .filter(factors::expires_at.lt(cutoff)),
            )
            .execute(conn)
            .await?;
            Ok::<_, diesel::result::Error>(
                counters + unverified + sessions + revoked + emails + changes + audited + challenges
                    + sign_ins + ceremonies + lapsed,
            )
        })
    }
}
