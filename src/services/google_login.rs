//! Signing in with Google. Accounts are found by (issuer, subject), never by email. An email
//! match links automatically only where Google is authoritative for the address and says it
//! is verified; the link then takes the account back from anyone who pre-registered it.

use anyhow::Context;

use super::{
    Caller, GoogleCredential, Services,
    core::{
        accounts::{NewAccount, Standing},
        audit::AuditEntry,
        effects::Tx,
        limits::IpBudget,
        sign_in::{GOOGLE, SignInOutcome, SignedIn},
    },
};
use crate::{
    domain::{Actor, AuditKind, Email},
    email::Notice,
    error::{ServiceError, ServiceResult},
    google::GoogleIdentity,
    storage::{StoreError, UserRow},
};

impl Services {
    /// Signs in with Google, creating the account on first use or linking an existing one.
    ///
    /// # Errors
    /// `GoogleNotConfigured`, `RateLimited`, `GoogleRejected`, `GoogleUnavailable`,
    /// `GoogleEmailUnverified`, `GoogleLinkRefused`, `AccountDisabled`.
    #[tracing::instrument(skip_all)]
    pub async fn google_login(
        &self,
        caller: Caller,
        credential: GoogleCredential,
    ) -> ServiceResult<SignInOutcome> {
        if !self.google.is_configured() {
            return Err(ServiceError::GoogleNotConfigured);
        }
        self.spend_ip_budget(&caller, IpBudget::Login, self.clock.now())
            .await?;
        let identity = self.verify_google(credential).await?;
        if !identity.email_verified {
            return Err(ServiceError::GoogleEmailUnverified);
        }
        let email = Email::parse(&identity.email).map_err(|_| {
            ServiceError::GoogleRejected("Google gave no usable email address".into())
        })?;
        let user = self.google_user(&caller, identity, email).await?;
        if !user.is_active {
            return Err(ServiceError::AccountDisabled);
        }
        let pair = self
            .start_session(&user, &caller, SignedIn::Google, self.clock.now())
            .await?;
        tracing::info!(user.id = %user.id, "signed in with Google");
        Ok(pair)
    }

    /// The account for a Google identity: linked, created, or linked by authoritative email.
    async fn google_user(
        &self,
        caller: &Caller,
        identity: GoogleIdentity,
        email: Email,
    ) -> ServiceResult<UserRow> {
        // A concurrent first sign-in may create the row or the link first; the second round
        // then finds it.
        for _ in 0..2 {
            let outcome = self
                .transaction(caller, async |tx| {
                    Self::find_or_link(tx, &identity, &email).await
                })
                .await;
            match outcome {
                Err(LinkError::Raced) => {}
                Err(LinkError::Refused(error)) => return Err(error),
                Ok(user) => return Ok(user),
            }
        }
        Err(anyhow::anyhow!("Google sign-in stayed contended").into())
    }

    async fn find_or_link(
        tx: &mut Tx<'_, '_>,
        identity: &GoogleIdentity,
        email: &Email,
    ) -> Result<UserRow, LinkError> {
        let now = tx.now_naive();
        if let Some(user_id) = tx
            .linked_user(GOOGLE, &identity.subject)
            .await
            .context("finding a linked identity")?
        {
            return Ok(tx
                .user_by_id(user_id)
                .await
                .context("loading the linked user")?
                .ok_or(ServiceError::GoogleLinkRefused)?);
        }
        let existing = tx
            .user_by_email(email)
            .await
            .context("finding a user by email")?;
        let user = match existing {
            None => {
                let account = NewAccount {
                    email: email.clone(),
                    password_hash: None,
                    first_name: identity.given_name.clone(),
                    last_name: identity.family_name.clone(),
                    standing: Standing::Verified,
                };
                match tx.insert_account(account).await {
                    Err(ServiceError::EmailTaken) => return Err(LinkError::Raced),
                    other => other?,
                }
            }
            Some(existing) => {
                if !google_is_authoritative(email, identity.hosted_domain.as_deref()) {
                    return Err(ServiceError::GoogleLinkRefused.into());
                }
                // Addresses are recycled: an account linked to one Google account is never
                // handed to another that now holds its address.
                let linked = tx
                    .has_linked_identity(GOOGLE, existing.id)
                    .await
                    .context("finding the account's Google link")?;
                if linked {
                    return Err(ServiceError::GoogleLinkRefused.into());
                }
                // Whoever set a password before the address was proven, and has not
                // signed in with it since, may not be its owner: Google proves the owner.
                let unproven = !existing.is_verified || existing.password_unproven;
                let wiped = unproven && existing.password_hash.is_some();
                if unproven {
                    tx.replace_password(&existing, None).await?;
                    tx.prove_mailbox(existing.id).await?;
                }
                let notice = if wiped {
                    Notice::GoogleLinkedPasswordRemoved
                } else {
                    Notice::GoogleLinked
                };
                tx.notify(notice, &existing).await?;
                tx.user_by_id(existing.id)
                    .await
                    .context("reloading the user")?
                    .ok_or(ServiceError::GoogleLinkRefused)?
            }
        };
        let linked = tx
            .link_identity(GOOGLE, &identity.subject, user.id, email, now)
            .await
            .context("linking a Google identity")?;
        if !linked {
            return Err(LinkError::Raced);
        }
        let entry = AuditEntry::success(AuditKind::GoogleLink, Actor::User(user.id), user.id)
            .detail(format!("subject={}", identity.subject));
        tx.audit(entry).await?;
        Ok(user)
    }
}

/// Why a linking transaction rolled back.
enum LinkError {
    /// A concurrent sign-in wrote the account or the link first: try again.
    Raced,
    /// The answer to give.
    Refused(ServiceError),
}

impl From<ServiceError> for LinkError {
    fn from(error: ServiceError) -> Self {
        Self::Refused(error)
    }
}

impl From<anyhow::Error> for LinkError {
    fn from(error: anyhow::Error) -> Self {
        Self::Refused(error.into())
    }
}

impl From<StoreError> for LinkError {
    fn from(error: StoreError) -> Self {
        Self::Refused(error.into())
    }
}

/// Google speaks for `@gmail.com` addresses and for Workspace domains it hosts (`hd`).
fn google_is_authoritative(email: &Email, hosted_domain: Option<&str>) -> bool {
    let domain = email
        .as_str()
        .rsplit_once('@')
        .map_or("", |(_, domain)| domain);
    matches!(domain, "gmail.com" | "googlemail.com")
        || hosted_domain.is_some_and(|hd| hd.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::google_is_authoritative;
    use crate::domain::Email;

    #[test]
    fn google_speaks_for_gmail_and_its_hosted_domains_only() {
        let gmail = Email::parse("a@gmail.com").unwrap();
        let corp = Email::parse("a@corp.example").unwrap();
        assert!(google_is_authoritative(&gmail, None));
        assert!(google_is_authoritative(&corp, Some("corp.example")));
        assert!(!google_is_authoritative(&corp, None));
        assert!(!google_is_authoritative(&corp, Some("other.example")));
    }
}
