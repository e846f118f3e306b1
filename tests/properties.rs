//! Hostile bytes at every parser at the edge: none panics, every refusal says why, and
//! what round-trips does.
//!
//! Each property runs proptest's default budget (256 cases); a long run sets
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=200000 cargo test --release --test properties`.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use identity::{
    auth::{
        BearerToken, LinkPurpose, LinkToken, LinkTokenError, LinkTokens, RefreshToken,
        ServerSecret, SessionAssurance, TokenIssuer, UserState,
    },
    config::Config,
    domain::{
        AuditKind, AuditPageToken, AuthMethod, AuthMethods, Email, EmailPrefix, IpNet,
        LoginPassword, Otp, PageSize, PageToken, Password, PersonName, SessionId, Uidb64, UserId,
    },
};
use proptest::prelude::*;

/// Text as hostile clients send it: any Unicode, with the characters parsers care about
/// (separators, dots, at-signs, invisibles, controls) much more often than chance.
fn hostile_text() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        Just('@'),
        Just('.'),
        Just('-'),
        Just(':'),
        Just('='),
        Just(' '),
        Just('\u{0}'),
        Just('\u{200B}'),
        Just('\u{202E}'),
        Just('\u{FEFF}'),
        Just('\u{FB01}'),
        Just('K'),
        Just('\u{212A}'),
        Just('0'),
        Just('9'),
        any::<char>(),
    ];
    prop_oneof![
        proptest::collection::vec(tricky, 0..40).prop_map(|chars| chars.into_iter().collect()),
        any::<String>(),
        "[a-z0-9._%+-]{1,70}@[a-z0-9.-]{1,70}",
    ]
}

fn user_id() -> impl Strategy<Value = UserId> {
    (1..=i64::MAX).prop_map(|id| UserId::parse(id).unwrap())
}

fn refusal_says_why(error: &identity::domain::ParseError) {
    assert!(!error.reason().trim().is_empty());
}

proptest! {
    #[test]
    fn email_parsing_never_panics_and_normal_forms_are_fixed_points(raw in hostile_text()) {
        match Email::parse(&raw) {
            Ok(email) => {
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(again.as_str(), email.as_str());
                prop_assert!(!email.as_str().chars().any(char::is_control));
            }
            Err(error) => refusal_says_why(&error),
        }
        if let Err(error) = EmailPrefix::parse(&raw) {
            refusal_says_why(&error);
        }
    }

    #[test]
    fn passwords_are_bounded_and_kept_whole(raw in hostile_text()) {
        match Password::parse(&raw) {
            Ok(password) => {
                use secrecy::ExposeSecret;
                let chars = password.secret().expose_secret().chars().count();
                prop_assert!((identity::domain::PASSWORD_MIN_CHARS..=identity::domain::PASSWORD_MAX_CHARS).contains(&chars));
            }
            Err(error) => refusal_says_why(&error),
        }
        if let Err(error) = LoginPassword::parse(&raw) {
            refusal_says_why(&error);
        }
    }

    #[test]
    fn names_are_trimmed_bounded_and_visible(raw in hostile_text()) {
        match PersonName::parse(&raw) {
            Ok(name) => {
                let name = name.into_inner();
                prop_assert_eq!(name.trim(), name.as_str());
                prop_assert!(name.chars().count() <= 150);
                prop_assert_eq!(PersonName::parse(&name).unwrap().into_inner(), name);
            }
            Err(error) => refusal_says_why(&error),
        }
    }

    #[test]
    fn a_code_is_exactly_six_ascii_digits(raw in hostile_text()) {
        let six_digits = raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit());
        match Otp::parse(&raw) {
            Ok(code) => prop_assert_eq!(code.expose(), raw.trim()),
            Err(error) => {
                prop_assert!(!six_digits);
                refusal_says_why(&error);
            }
        }
    }

    #[test]
    fn uidb64_round_trips_every_id_and_refuses_the_rest_cleanly(id in user_id(), raw in hostile_text()) {
        prop_assert_eq!(Uidb64::parse(&Uidb64::encode(id)).unwrap().user_id(), id);
        if let Err(error) = Uidb64::parse(&raw) {
            refusal_says_why(&error);
        }
    }

    #[test]
    fn page_tokens_round_trip_and_stay_bound_to_their_listing(
        last in user_id(),
        query in hostile_text(),
        other in hostile_text(),
        raw in hostile_text(),
        size in any::<i32>(),
    ) {
        let token = PageToken::parse(&PageToken::encode(last, &query)).unwrap();
        prop_assert_eq!(token.after(), Some(last));
        prop_assert!(token.continues(&query));
        prop_assert_eq!(token.continues(&other), other == query);
        let before = last.get();
        prop_assert_eq!(AuditPageToken::parse(&AuditPageToken::encode(before, &query)).unwrap().before(), Some(before));
        if let Err(error) = PageToken::parse(&raw) {
            refusal_says_why(&error);
        }
        if let Err(error) = AuditPageToken::parse(&raw) {
            refusal_says_why(&error);
        }
        match PageSize::parse(size) {
            Ok(size) => prop_assert!((1..=100).contains(&size.get())),
            Err(_) => prop_assert!(size < 0),
        }
    }

    #[test]
    fn identifiers_and_ranges_refuse_cleanly(raw in hostile_text()) {
        if let Err(error) = SessionId::parse(&raw) {
            refusal_says_why(&error);
        }
        if let Err(error) = IpNet::parse(&raw) {
            refusal_says_why(&error);
        }
        if let Err(error) = AuditKind::parse(&raw) {
            refusal_says_why(&error);
            prop_assert!(error.reason().contains("sign_in"), "the refusal lists the kinds");
        }
    }

    #[test]
    fn bearer_headers_take_only_one_well_formed_token(raw in hostile_text()) {
        if let Some(token) = BearerToken::from_authorization(&raw) {
            prop_assert!(!token.expose().is_empty());
            prop_assert!(!token.expose().contains(char::is_whitespace));
        }
        // Refresh tokens are opaque: any text is taken, and only its hash is ever looked up.
        let refresh = RefreshToken::from_client(&raw);
        prop_assert_eq!(refresh.hash(), RefreshToken::from_client(&raw).hash());
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn issuer() -> TokenIssuer {
    let config = Config::from_map(&HashMap::new()).unwrap();
    TokenIssuer::hs256(b"a property-test key that is long enough", &config.jwt)
}

proptest! {
    #[test]
    fn access_tokens_refuse_anything_but_what_was_issued(
        raw in hostile_text(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let issuer = issuer();
        prop_assert!(issuer.verify(&raw, now()).is_err());
        let email = Email::parse("ada@example.com").unwrap();
        let methods = AuthMethods::of(&[AuthMethod::Password]);
        let assurance = SessionAssurance { methods: &methods, auth_time: now() };
        let issued = issuer
            .issue(UserId::parse(7).unwrap(), &email, &SessionId::generate(), assurance, now())
            .unwrap();
        prop_assert!(issuer.verify(&issued, now()).is_ok());
        let mut bytes = issued.clone().into_bytes();
        let at = position.index(bytes.len());
        let replacement = if replacement.is_ascii_graphic() { replacement } else { b'A' };
        if bytes[at] != replacement {
            bytes[at] = replacement;
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert!(issuer.verify(&tampered, now()).is_err(), "{tampered} verified");
        }
    }

    #[test]
    fn link_tokens_refuse_anything_but_what_was_made(raw in hostile_text(), id in user_id()) {
        let links = LinkTokens::new(ServerSecret::new(vec![7; 32]));
        let email = Email::parse("ada@example.com").unwrap();
        let state = UserState {
            id,
            email: &email,
            password_hash: Some("argon2id$..."),
            password_changed_at: now(),
            is_verified: false,
            registration: None,
        };
        let day = std::time::Duration::from_secs(86_400);
        let refused = links.check(LinkPurpose::Activation, &LinkToken::from_client(&raw), &state, now(), day);
        prop_assert_eq!(refused, Err(LinkTokenError::Invalid));
        let made = links.make(LinkPurpose::Activation, &state, now());
        prop_assert!(links.check(LinkPurpose::Activation, &LinkToken::from_client(&made), &state, now(), day).is_ok());
        prop_assert!(links.check(LinkPurpose::PasswordReset, &LinkToken::from_client(&made), &state, now(), day).is_err());
    }
}
