//! Sign-ins with a passkey: accounts with a registered software passkey
//! (`webauthn-authenticator-rs`'s, verifying its user), and callers that sign in
//! username-first as a browser does: `StartPasskeySignIn`, the authenticator's signature,
//! `FinishPasskeySignIn` (an `aal2` session by itself).
//!
//! The service accepts each value of a passkey's signature counter once, so each caller
//! signs in as an account of its own, one sign-in after another.

use std::{cell::RefCell, rc::Rc};

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tonic::transport::Channel;
use webauthn_authenticator_rs::{
    prelude::{CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator},
    softpasskey::SoftPasskey,
};

use crate::server::{PASSKEY_ORIGIN, Server, authorized};

/// Where the passkey accounts' numbers start, clear of the others.
const FIRST_ACCOUNT: usize = 2_000_000;

/// One account and the authenticator that holds its passkey.
struct Account {
    email: String,
    key: SoftPasskey,
}

/// The accounts the passkey row signs in as, one per caller.
pub struct PasskeyAccounts(Vec<Rc<RefCell<Account>>>);

impl PasskeyAccounts {
    /// Makes `count` accounts (with the CLI, as the other rows' are) and registers a passkey
    /// on each over gRPC.
    pub async fn register(
        server: &Server,
        database_url: Option<&str>,
        client: &IdentityServiceClient<Channel>,
        count: usize,
    ) -> Self {
        let numbers = FIRST_ACCOUNT..FIRST_ACCOUNT + count;
        let accounts = server
            .accounts_set_up(database_url, client, numbers, register_one)
            .await;
        Self(
            accounts
                .into_iter()
                .map(RefCell::new)
                .map(Rc::new)
                .collect(),
        )
    }
}

async fn register_one(
    mut client: IdentityServiceClient<Channel>,
    email: String,
    access: String,
) -> Account {
    let started = client
        .start_passkey_registration(authorized(pb::StartPasskeyRegistrationRequest {}, &access))
        .await
        .unwrap()
        .into_inner();
    let options: CreationChallengeResponse =
        serde_json::from_value(pb::struct_json(&started.options.unwrap()).unwrap()).unwrap();
    let mut key = SoftPasskey::new(true);
    let created = key.do_registration(origin(), options).unwrap();
    let finish = pb::FinishPasskeyRegistrationRequest {
        ceremony_id: started.ceremony_id,
        credential: Some(serde_json::from_value(serde_json::to_value(created).unwrap()).unwrap()),
        name: "bench".into(),
    };
    client
        .finish_passkey_registration(authorized(finish, &access))
        .await
        .unwrap();
    Account { email, key }
}

/// One caller per account, each signing in with its passkey again and again.
pub fn sign_ins(
    client: &IdentityServiceClient<Channel>,
    accounts: &PasskeyAccounts,
) -> Vec<impl AsyncFnMut() -> bool + 'static> {
    accounts
        .0
        .iter()
        .map(|account| {
            let (mut client, account) = (client.clone(), Rc::clone(account));
            async move || {
                let email = account.borrow().email.clone();
                let started = client
                    .start_passkey_sign_in(pb::StartPasskeySignInRequest {
                        email,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let options: RequestChallengeResponse =
                    serde_json::from_value(pb::struct_json(&started.options.unwrap()).unwrap())
                        .unwrap();
                let answered = account
                    .borrow_mut()
                    .key
                    .do_authentication(origin(), options)
                    .unwrap();
                let finish = pb::FinishPasskeySignInRequest {
                    ceremony_id: started.ceremony_id,
                    credential: Some(
                        serde_json::from_value(serde_json::to_value(answered).unwrap()).unwrap(),
                    ),
                };
                client
                    .finish_passkey_sign_in(finish)
                    .await
                    .is_ok_and(|reply| !reply.into_inner().access.is_empty())
            }
        })
        .collect()
}

fn origin() -> Url {
    Url::parse(PASSKEY_ORIGIN).unwrap()
}
