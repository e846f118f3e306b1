//! The transaction every change runs in. A feature writes its rows, audit entries, notices
//! and mail through one `Tx`; they commit together or not at all, and the outbox is woken
//! once after a commit that queued mail, so no feature has to remember to.

use std::ops::{Deref, DerefMut};

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{
    email::Notice,
    error::ServiceResult,
    services::{Caller, Services},
    storage::{NewEmail, Queries, StoreError, TransactionBody, UserRow},
};

/// One transaction of the service layer: the storage transaction's queries, the call's
/// caller (for the audit trail) and the instant the call acts at, read once.
pub(crate) struct Tx<'q, 'c> {
    queries: &'q mut Queries<'c>,
    pub(crate) services: &'q Services,
    pub(crate) caller: &'q Caller,
    now: DateTime<Utc>,
}

impl<'c> Deref for Tx<'_, 'c> {
    type Target = Queries<'c>;

    fn deref(&self) -> &Queries<'c> {
        self.queries
    }
}

impl<'c> DerefMut for Tx<'_, 'c> {
    fn deref_mut(&mut self) -> &mut Queries<'c> {
        self.queries
    }
}

impl Tx<'_, '_> {
    /// The instant the call acts at.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// [`Tx::now`], as the database stores it.
    pub(crate) fn now_naive(&self) -> NaiveDateTime {
        self.now.naive_utc()
    }

    /// Queues one email, delivered once the transaction commits.
    pub(crate) async fn queue_mail(&mut self, mail: &NewEmail) -> ServiceResult<()> {
        self.queries
            .enqueue_email(mail)
            .await
            .context("queueing an email")?;
        Ok(())
    }

    /// Tells the owner of `account`, at the address it has now, that `notice` happened.
    pub(crate) async fn notify(&mut self, notice: Notice, account: &UserRow) -> ServiceResult<()> {
        let mail = self.services.mailer.notice(
            notice,
            &account.email,
            &account.first_name,
            self.now_naive(),
        );
        self.queue_mail(&mail).await
    }
}

/// What [`Services::transaction`] runs: an async closure over the [`Tx`] whose future can
/// move between threads (see [`TransactionBody`]).
pub(crate) trait TxWork<R, E>:
    for<'t, 'q, 'c> AsyncFnOnce(&'t mut Tx<'q, 'c>) -> Result<R, E>
    + for<'t, 'q, 'c> TransactionBody<&'t mut Tx<'q, 'c>, Result<R, E>, Future: Send>
    + Send
{
}

impl<F, R, E> TxWork<R, E> for F where
    F: for<'t, 'q, 'c> AsyncFnOnce(&'t mut Tx<'q, 'c>) -> Result<R, E>
        + for<'t, 'q, 'c> TransactionBody<&'t mut Tx<'q, 'c>, Result<R, E>, Future: Send>
        + Send
{
}

impl Services {
    /// Runs `work` in one transaction for `caller`, then wakes the outbox if it queued mail.
    /// `work` is an async closure over the `Tx`: `self.transaction(&caller, async |tx| ..)`;
    /// its error (a [`crate::error::ServiceError`], or a feature's own that rolls back for a
    /// retry) rolls everything back.
    ///
    /// # Errors
    /// The error of `work`, or a storage failure.
    pub(crate) async fn transaction<R, E, F>(&self, caller: &Caller, work: F) -> Result<R, E>
    where
        F: TxWork<R, E>,
        R: Send,
        E: From<StoreError> + Send,
    {
        self.transaction_at(caller, self.clock.now(), work).await
    }

    /// [`Services::transaction`] acting at `now`, the instant the call read before it began.
    ///
    /// # Errors
    /// The error of `work`, or a storage failure.
    pub(crate) async fn transaction_at<R, E, F>(
        &self,
        caller: &Caller,
        now: DateTime<Utc>,
        work: F,
    ) -> Result<R, E>
    where
        F: TxWork<R, E>,
        R: Send,
        E: From<StoreError> + Send,
    {
        let (done, mailed) = self
            .store
            .transaction(async |queries| {
                let mut tx = Tx {
                    queries,
                    services: self,
                    caller,
                    now,
                };
                let done = work(&mut tx).await?;
                Ok::<_, E>((done, tx.queued_mail()))
            })
            .await?;
        if mailed {
            self.outbox_wake.notify_one();
        }
        Ok(done)
    }
}
