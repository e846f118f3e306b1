//! Accounts moved from Django keep their password: Django's hash formats verify at login and
//! are re-hashed to argon2id on the first success, and the metric counts what is left.

use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_refused};

/// The password the hashes below were made for, by Django 5.1's own hashers (with cheap
/// parameters).
const DJANGO_PASSWORD: &str = "correct horse battery staple ünïcode";
const DJANGO_HASHES: [&str; 5] = [
    "pbkdf2_sha256$1000$N3YY7ySvzEuLpyC8kSPGOv$vrS4iYw/dFf6/DAx/cz2Quisw72bthTbFT/kQ0y+Ueo=",
    "pbkdf2_sha1$1000$S9nuxS97MTj2dMtpNJYnar$Q1bnGAK1gHqucZuoAEdPLIgfsW4=",
    "argon2$argon2id$v=19$m=1024,t=1,p=2$SHhpY3dQTEk5RjMxZmcyUVcyUURxNA$vZRzCYTNmVi+yo7bJbYt22pi6nubjMKSSIBDVWE2joY",
    "bcrypt_sha256$$2b$04$fsSDUttWNovygoE34a7UleVB7jiZQ6zu9RUdnF8tvsChCuR5/vfYO",
    "bcrypt$$2b$04$LiMLPvDCcSdbyHiLkWIWLOSAKO6Kblp3yeZQK1pUJI7oNbiUiqCHS",
];

async fn legacy_hashes(app: &TestApp) -> String {
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("identity_legacy_password_hashes "))
        .unwrap_or_default()
        .to_owned()
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    app.query_texts(&format!(
        "SELECT password_hash AS value FROM users WHERE email = '{email}'"
    ))
    .await
    .remove(0)
}

async fn django_hashes_sign_in_once_and_become_argon2id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (n, hash) in DJANGO_HASHES.iter().enumerate() {
        let email = format!("moved{n}@example.com");
        app.verified_user(&email).await;
        app.execute_sql(&format!(
            "UPDATE users SET password_hash = '{hash}' WHERE email = '{email}'"
        ))
        .await;
    }
    // An unusable password (Django's `!…`) signs nobody in and is no legacy hash to upgrade.
    app.verified_user("unusable@example.com").await;
    app.execute_sql(
        "UPDATE users SET password_hash = '!rHkL20CE6D1wFSbA6BCmmoVH0Svc0IYl8iQce63H' \
         WHERE email = 'unusable@example.com'",
    )
    .await;
    let unusable = app.login("unusable@example.com", DJANGO_PASSWORD).await;
    assert_refused(unusable, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(legacy_hashes(&app).await, "5");

    for (n, hash) in DJANGO_HASHES.iter().enumerate() {
        let email = format!("moved{n}@example.com");
        let wrong = app.login(&email, "correct horse battery staple").await;
        assert_refused(wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
        assert_eq!(stored_hash(&app, &email).await, *hash);

        app.login(&email, DJANGO_PASSWORD).await.unwrap();
        let upgraded = stored_hash(&app, &email).await;
        assert!(upgraded.starts_with("$argon2id$v=19$"), "{upgraded}");
        app.login(&email, DJANGO_PASSWORD).await.unwrap();
    }
    assert_eq!(legacy_hashes(&app).await, "0");
}

crate::on_both_backends!(django_hashes_sign_in_once_and_become_argon2id);
