//! Which client a request is counted against: the peer, or behind trusted proxies the
//! right-most address of the forwarded chain they did not write themselves.

use identity::pb;
use tonic::{Code, Request};

use crate::helpers::{Backend, TestApp};

/// Two logins per client per window, with the loopback test client as a trusted proxy.
const SETTINGS: &[(&str, &str)] = &[
    ("RATE_LIMIT_LOGIN", "2"),
    ("TRUSTED_PROXIES", "127.0.0.0/8, ::1"),
];

/// Signs in (as a new address each time, so only the client's budget can refuse) and says
/// how it went: `Unauthenticated` when the password was checked, `ResourceExhausted` when
/// the client's budget refused it.
async fn login_from(app: &TestApp, forwarded: &[&str]) -> Code {
    let mut request = Request::new(pb::LoginRequest {
        email: format!("{}@example.com", uuid::Uuid::new_v4().simple()),
        password: "a-wrong-passphrase".into(),
    });
    for value in forwarded {
        request
            .metadata_mut()
            .append("x-forwarded-for", value.parse().unwrap());
    }
    match app.client.clone().login(request).await {
        Ok(_) => Code::Ok,
        Err(status) => {
            use tonic_types::StatusExt;
            let reason = status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone());
            if status.code() == Code::ResourceExhausted {
                assert_eq!(reason.as_deref(), Some("RATE_LIMITED"), "{status:?}");
            }
            status.code()
        }
    }
}

async fn spend(app: &TestApp, forwarded: &[&str]) -> Vec<Code> {
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(login_from(app, forwarded).await);
    }
    codes
}

const TWO_THEN_LIMITED: [Code; 3] = [
    Code::Unauthenticated,
    Code::Unauthenticated,
    Code::ResourceExhausted,
];

async fn addresses_a_client_writes_itself_never_escape_its_budget(backend: Backend) {
    let app = TestApp::spawn_with(backend, SETTINGS).await;

    let mut forged = Vec::new();
    for n in 0..3 {
        let chain = format!("10.9.8.{n}, 203.0.113.5");
        forged.push(login_from(&app, &[chain.as_str()]).await);
    }
    let split_over_values = spend(&app, &["198.51.100.1", "198.51.100.2"]).await;
    let last_value = login_from(&app, &["198.51.100.2"]).await;

    assert_eq!(forged, TWO_THEN_LIMITED, "counted against 203.0.113.5");
    assert_eq!(split_over_values, TWO_THEN_LIMITED);
    assert_eq!(
        last_value,
        Code::ResourceExhausted,
        "every header value is read"
    );
}

async fn ipv6_clients_are_counted_by_their_network(backend: Backend) {
    let app = TestApp::spawn_with(backend, SETTINGS).await;

    let one_host = [
        login_from(&app, &["2001:db8:1:2::1"]).await,
        login_from(&app, &["2001:db8:1:2::ffff"]).await,
        login_from(&app, &["2001:db8:1:2:abcd::9"]).await,
    ];
    let next_network = login_from(&app, &["2001:db8:1:3::1"]).await;
    let mapped = [
        login_from(&app, &["192.0.2.44"]).await,
        login_from(&app, &["::ffff:192.0.2.44"]).await,
        login_from(&app, &["192.0.2.44"]).await,
    ];

    assert_eq!(one_host, TWO_THEN_LIMITED);
    assert_eq!(next_network, Code::Unauthenticated);
    assert_eq!(mapped, TWO_THEN_LIMITED, "IPv4-mapped is the IPv4 address");
}

async fn without_trust_the_forwarded_header_is_ignored(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_LOGIN", "2")]).await;

    let codes = [
        login_from(&app, &["203.0.113.1"]).await,
        login_from(&app, &["203.0.113.2"]).await,
        login_from(&app, &["203.0.113.3"]).await,
    ];

    assert_eq!(codes, TWO_THEN_LIMITED, "all counted against the peer");
}

crate::on_both_backends!(
    addresses_a_client_writes_itself_never_escape_its_budget,
    ipv6_clients_are_counted_by_their_network,
    without_trust_the_forwarded_header_is_ignored,
);
