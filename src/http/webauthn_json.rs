//! The W3C WebAuthn JSON shapes (WebAuthn Level 3, §5.1 and §5.4 `…JSON` types) that the
//! passkey RPCs carry in `google.protobuf.Struct` fields, for the OpenAPI document: what a
//! browser passes to `navigator.credentials` and what its `PublicKeyCredential.toJSON()`
//! answers. Members a later level adds are allowed (`additionalProperties`); numbers are
//! `number`, as a `Struct` carries them.

use serde_json::{Value, json};

/// The schema a `Struct` field holds: `(message, field)` to the schema's name.
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "StartPasskeyRegistrationResponse",
        "options",
        "CredentialCreationOptionsJSON",
    ),
    (
        "StartPasskeySignInResponse",
        "options",
        "CredentialRequestOptionsJSON",
    ),
    (
        "FinishPasskeyRegistrationRequest",
        "credential",
        "RegistrationResponseJSON",
    ),
    (
        "FinishPasskeySignInRequest",
        "credential",
        "AuthenticationResponseJSON",
    ),
    ("PasskeyAnswer", "credential", "AuthenticationResponseJSON"),
];

/// The name of the W3C shape the `Struct` field `field` of `message` holds.
pub(super) fn shape_of(message: &str, field: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(m, f, _)| *m == message && *f == field)
        .map(|(_, _, shape)| *shape)
}

fn base64url() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "description": "base64url, unpadded"})
}

fn object(required: &[&str], properties: &Value) -> Value {
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": true,
    })
}

fn descriptors() -> Value {
    json!({"type": "array", "items": object(&["type", "id"], &json!({
        "type": {"type": "string", "enum": ["public-key"]},
        "id": base64url(),
        "transports": {"type": "array", "items": {"type": "string"}},
    }))})
}

/// Every W3C shape, by the name `shape_of` gives, for `components.schemas`.
pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let loose = json!({"type": "object", "additionalProperties": true});
    let creation = object(
        &["rp", "user", "challenge", "pubKeyCredParams"],
        &json!({
            "rp": object(&["name"], &json!({"id": {"type": "string"}, "name": {"type": "string"}})),
            "user": object(&["id", "name", "displayName"], &json!({
                "id": base64url(),
                "name": {"type": "string"},
                "displayName": {"type": "string"},
            })),
            "challenge": base64url(),
            "pubKeyCredParams": {"type": "array", "items": object(&["type", "alg"], &json!({
                "type": {"type": "string", "enum": ["public-key"]},
                "alg": {"type": "number", "description": "a COSE algorithm (-7: ES256, -257: RS256)"},
            }))},
            "timeout": {"type": "number", "description": "milliseconds"},
            "excludeCredentials": descriptors(),
            "authenticatorSelection": loose,
            "hints": {"type": "array", "items": {"type": "string"}},
            "attestation": {"type": "string"},
            "extensions": loose,
        }),
    );
    let request = object(
        &["challenge"],
        &json!({
            "challenge": base64url(),
            "timeout": {"type": "number", "description": "milliseconds"},
            "rpId": {"type": "string"},
            "allowCredentials": descriptors(),
            "userVerification": {"type": "string", "enum": ["required", "preferred", "discouraged"]},
            "hints": {"type": "array", "items": {"type": "string"}},
            "extensions": loose,
        }),
    );
    let credential = |response: Value| {
        object(
            &["id", "rawId", "response", "type"],
            &json!({
                "id": base64url(),
                "rawId": base64url(),
                "response": response,
                "type": {"type": "string", "enum": ["public-key"]},
                "authenticatorAttachment": {"type": "string"},
                "clientExtensionResults": loose,
            }),
        )
    };
    vec![
        (
            "CredentialCreationOptionsJSON",
            object(&["publicKey"], &json!({"publicKey": creation})),
        ),
        (
            "CredentialRequestOptionsJSON",
            object(&["publicKey"], &json!({"publicKey": request})),
        ),
        (
            "RegistrationResponseJSON",
            credential(object(
                &["clientDataJSON", "attestationObject"],
                &json!({
                    "clientDataJSON": base64url(),
                    "attestationObject": base64url(),
                    "transports": {"type": "array", "items": {"type": "string"}},
                }),
            )),
        ),
        (
            "AuthenticationResponseJSON",
            credential(object(
                &["clientDataJSON", "authenticatorData", "signature"],
                &json!({
                    "clientDataJSON": base64url(),
                    "authenticatorData": base64url(),
                    "signature": base64url(),
                    "userHandle": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "nullable": true},
                }),
            )),
        ),
    ]
}
