//! Sign-ins with a second factor: accounts with a confirmed TOTP factor, and callers that
//! sign in with a password and then a code.
//!
//! The service accepts each time step of a factor once, so a caller cannot repeat one
//! account's sign-in the way the password-only row repeats its own: each call takes the
//! next account with an unspent step (the current one, or the next, which the service's
//! one step of skew also accepts), and the pool is sized for a row of any length.

use std::{cell::RefCell, rc::Rc};

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tonic::transport::Channel;
use totp_rs::{Builder, Secret, Totp};

use crate::server::{PASSWORD, Server, authorized};

/// Where the TOTP accounts' numbers start, clear of the password-only ones.
const FIRST_ACCOUNT: usize = 1_000_000;
/// A time step, in seconds (RFC 6238's default, and the service's).
const STEP_SECONDS: u64 = 30;

/// One account with a confirmed factor, and the last time step spent on it.
struct Account {
    email: String,
    totp: Totp,
    last_step: u64,
}

/// The accounts the TOTP row signs in as, shared by its callers.
#[derive(Clone)]
pub struct TotpAccounts {
    accounts: Rc<RefCell<Vec<Account>>>,
    next: Rc<RefCell<usize>>,
}

impl TotpAccounts {
    /// Makes `count` accounts (with the CLI, as the other rows' are) and enrols a TOTP
    /// factor on each over gRPC.
    pub async fn enrol(
        server: &Server,
        database_url: Option<&str>,
        client: &IdentityServiceClient<Channel>,
        count: usize,
    ) -> Self {
        let numbers = FIRST_ACCOUNT..FIRST_ACCOUNT + count;
        let accounts = server
            .accounts_set_up(database_url, client, numbers, enrol_one)
            .await;
        Self {
            accounts: Rc::new(RefCell::new(accounts)),
            next: Rc::new(RefCell::new(0)),
        }
    }

    /// The next account with a step left to spend, and that step's code. Panics when
    /// every account has spent both steps the service accepts now: the row outran the pool.
    fn take(&self) -> (String, String) {
        let now = unix_seconds();
        let current = now / STEP_SECONDS;
        let mut accounts = self.accounts.borrow_mut();
        let mut next = self.next.borrow_mut();
        let count = accounts.len();
        for _ in 0..count {
            let account = &mut accounts[*next];
            *next = (*next + 1) % count;
            let step = current.max(account.last_step + 1);
            if step <= current + 1 {
                account.last_step = step;
                let code = account.totp.generate(step * STEP_SECONDS);
                return (account.email.clone(), code.to_string());
            }
        }
        panic!("every TOTP account spent its steps: raise BENCH_TOTP_ACCOUNTS");
    }
}

async fn enrol_one(
    mut client: IdentityServiceClient<Channel>,
    email: String,
    access: String,
) -> Account {
    let started = client
        .start_totp_enrollment(authorized(
            pb::StartTotpEnrollmentRequest {
                name: "bench".into(),
            },
            &access,
        ))
        .await
        .unwrap()
        .into_inner();
    let secret = Secret::try_from_base32(&started.secret).unwrap();
    let totp = Builder::new().with_secret(secret).build().unwrap();
    let step = unix_seconds() / STEP_SECONDS;
    client
        .confirm_totp_enrollment(authorized(
            pb::ConfirmTotpEnrollmentRequest {
                factor_id: started.factor_id,
                code: totp.generate(step * STEP_SECONDS).to_string(),
            },
            &access,
        ))
        .await
        .unwrap();
    Account {
        email,
        totp,
        last_step: step,
    }
}

/// `count` callers that each sign in with a password and then a TOTP code, as a person
/// with a second factor does: `Login` answers `mfa_required`, `VerifySecondFactor` the tokens.
pub fn sign_ins(
    client: &IdentityServiceClient<Channel>,
    accounts: &TotpAccounts,
    count: usize,
) -> Vec<impl AsyncFnMut() -> bool + 'static> {
    (0..count)
        .map(|_| {
            let (mut client, accounts) = (client.clone(), accounts.clone());
            async move || {
                let (email, code) = accounts.take();
                let login = pb::LoginRequest {
                    email,
                    password: PASSWORD.into(),
                };
                let Some(challenge) = client.login(login).await.unwrap().into_inner().mfa_required
                else {
                    return false;
                };
                let verify = pb::VerifySecondFactorRequest {
                    mfa_token: challenge.mfa_token,
                    totp_code: code,
                    ..Default::default()
                };
                client
                    .verify_second_factor(verify)
                    .await
                    .is_ok_and(|reply| !reply.into_inner().access.is_empty())
            }
        })
        .collect()
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
