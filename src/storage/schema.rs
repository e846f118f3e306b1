//! Diesel's view of the tables in `migrations/`; only SQL types both backends share.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Nullable<Text>,
        first_name -> Text,
        last_name -> Text,
        is_active -> Bool,
        is_verified -> Bool,
        is_staff -> Bool,
        is_superuser -> Bool,
        date_joined -> Timestamp,
        last_login -> Nullable<Timestamp>,
        password_changed_at -> Timestamp,
        sessions_ended_at -> Nullable<Timestamp>,
        password_unproven -> Bool,
    }
}

diesel::table! {
    registrations (id) {
        id -> BigInt,
        user_id -> BigInt,
        password_hash -> Nullable<Text>,
        first_name -> Text,
        last_name -> Text,
        created_at -> Timestamp,
        code_hash -> Nullable<Text>,
        code_expires_at -> Nullable<Timestamp>,
        code_attempts -> Integer,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        device -> Text,
        client_ip -> Nullable<Text>,
        last_refreshed_at -> Nullable<Timestamp>,
        methods -> Text,
        auth_time -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    counters (bucket) {
        bucket -> Text,
        window_started_at -> Timestamp,
        hits -> Integer,
        last_hit_at -> Timestamp,
        blocked_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        recipient -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        sent_at -> Nullable<Timestamp>,
        gave_up_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    instance_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        generation -> BigInt,
        private_key -> Text,
        created_at -> Timestamp,
        activates_at -> Timestamp,
    }
}

diesel::table! {
    revocations (id) {
        id -> BigInt,
        session_id -> Nullable<Text>,
        user_id -> Nullable<BigInt>,
        not_valid_before -> Nullable<Timestamp>,
        created_at -> Timestamp,
        position -> Nullable<BigInt>,
    }
}

diesel::joinable!(registrations -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(users, registrations, sessions, refresh_tokens);

diesel::table! {
    linked_identities (provider, subject) {
        provider -> Text,
        subject -> Text,
        user_id -> BigInt,
        email -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    email_changes (user_id) {
        user_id -> BigInt,
        new_email -> Text,
        code_hash -> Text,
        attempts -> Integer,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        kind -> Text,
        outcome -> Text,
        actor -> Text,
        subject_user_id -> Nullable<BigInt>,
        client_ip -> Nullable<Text>,
        user_agent -> Text,
        detail -> Text,
    }
}

diesel::table! {
    django_link_states (user_id) {
        user_id -> BigInt,
        email -> Text,
        password -> Text,
        last_login -> Nullable<Timestamp>,
    }
}

diesel::table! {
    django_refresh_exchanges (jti) {
        jti -> Text,
        user_id -> BigInt,
        exchanged_at -> Timestamp,
    }
}

diesel::table! {
    django_blacklisted_refresh (jti) {
        jti -> Text,
    }
}

diesel::table! {
    django_imported_accounts (source_pk) {
        source_pk -> BigInt,
        user_id -> Nullable<BigInt>,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        is_active -> Bool,
        is_verified -> Bool,
        is_staff -> Bool,
        is_superuser -> Bool,
        password_hash -> Nullable<Text>,
        imported_at -> Timestamp,
    }
}

diesel::table! {
    factors (id) {
        id -> Text,
        user_id -> BigInt,
        kind -> Text,
        name -> Text,
        secret -> Text,
        last_step -> Nullable<BigInt>,
        created_at -> Timestamp,
        confirmed_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        credential_id -> Nullable<Text>,
        credential -> Nullable<Text>,
    }
}

diesel::table! {
    webauthn_ceremonies (id) {
        id -> Text,
        kind -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    recovery_codes (code_hash) {
        code_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    email_sign_ins (link_hash) {
        link_hash -> Text,
        user_id -> BigInt,
        email -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Text,
        user_id -> BigInt,
        first_factor -> Text,
        password_changed_at -> Timestamp,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}
