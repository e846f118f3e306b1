//! Settings that stop start-up: one line naming the variable, TLS files that do not load.

use super::stderr;
use crate::binary::identity;

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();

    let output = identity(&dir, &["serve"])
        .env("OTP_EXPIRATION_TIME", "ten minutes")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OTP_EXPIRATION_TIME"), "{stderr}");
}

#[test]
fn tls_settings_that_do_not_load_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let garbage = garbage.to_str().unwrap();

    let half = identity(&dir, &["serve"])
        .env("GRPC_TLS_KEY_FILE", garbage)
        .output()
        .unwrap();
    let unreadable = identity(&dir, &["serve"])
        .env("GRPC_TLS_CERT_FILE", garbage)
        .env("GRPC_TLS_KEY_FILE", garbage)
        .output()
        .unwrap();

    assert_eq!(half.status.code(), Some(2));
    assert!(
        stderr(&half).contains("GRPC_TLS_CERT_FILE"),
        "{}",
        stderr(&half)
    );
    assert!(!unreadable.status.success());
    assert_eq!(
        stderr(&unreadable).lines().count(),
        1,
        "{}",
        stderr(&unreadable)
    );
    assert!(
        stderr(&unreadable).contains("GRPC_TLS_CERT_FILE"),
        "{}",
        stderr(&unreadable)
    );
}
