//! The bridge's OpenAPI 3 document, generated from the same descriptors and annotations as
//! the routes, so the two cannot disagree.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::{routes::HttpRoute, webauthn_json};
use crate::domain::PASSWORD_MAX_CHARS;

/// RPCs that need `authorization: Bearer <access>`.
const AUTHENTICATED: &[&str] = &[
    "LogoutAll",
    "StartTotpEnrollment",
    "ConfirmTotpEnrollment",
    "ListFactors",
    "StepUp",
    "RemoveFactor",
    "RenameFactor",
    "RegenerateRecoveryCodes",
    "StartPasskeyRegistration",
    "FinishPasskeyRegistration",
    "ListSessions",
    "RevokeSession",
    "LogoutOthers",
    "ChangePassword",
    "ChangeEmail",
    "ConfirmEmailChange",
    "DeleteAccount",
];
/// RPCs that need `authorization: Bearer <service token>`.
const FOR_SERVICES: &[&str] = &["IntrospectToken"];
/// RPCs for a staff user's access token or a service token with the right scope.
const FOR_STAFF_OR_SERVICES: &[&str] = &[
    "ResetUserFactors",
    "ListUsers",
    "GetUser",
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "ListAuditEvents",
];

/// The document for `routes`.
///
/// # Errors
/// When a route names a message the descriptors lack.
pub fn document(pool: &DescriptorPool, routes: &[HttpRoute]) -> anyhow::Result<Value> {
    let mut schemas = BTreeMap::new();
    let mut paths = Map::new();
    for route in routes {
        let request = message(pool, &route.request_type)?;
        let response = message(pool, &route.response_type)?;
        collect_schema(&response, &mut schemas);
        let mut parameters: Vec<Value> = route
            .path_params
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
            .collect();
        let mut operation = json!({
            "operationId": route.rpc,
            "summary": route.rpc,
            "responses": {
                "200": {"description": "Success", "content": {"application/json": {"schema": reference(&response)}}},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        let rest: Vec<FieldDescriptor> = request
            .fields()
            .filter(|f| !route.path_params.contains(&f.name().to_owned()))
            .collect();
        if route.has_body {
            let body = object_schema(&rest, &mut schemas);
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        } else {
            parameters.extend(rest.iter().map(|f| json!({"name": f.name(), "in": "query", "required": false, "schema": field_schema(f, &mut schemas)})));
        }
        if route.rpc == super::ACTIVATE {
            // The emailed link: a GET that does not ask for JSON (a browser, a mail scanner)
            // gets the page whose button confirms.
            operation["responses"]["200"]["content"]["text/html"] =
                json!({"schema": {"type": "string"}});
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if AUTHENTICATED.contains(&route.rpc.as_str()) {
            operation["security"] = json!([{"bearerAuth": []}]);
        }
        if FOR_SERVICES.contains(&route.rpc.as_str()) {
            operation["security"] = json!([{"serviceToken": []}]);
        }
        if FOR_STAFF_OR_SERVICES.contains(&route.rpc.as_str()) {
            operation["security"] = json!([{"bearerAuth": []}, {"serviceToken": []}]);
        }
        let method = route.method.as_str().to_ascii_lowercase();
        paths
            .entry(route.slashed())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .map(|item| item.insert(method, operation));
    }
    schemas.extend(
        webauthn_json::schemas()
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema)),
    );
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "integer", "description": "gRPC status code"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "required": ["@type"], "properties": {"@type": {"type": "string"}}}},
            },
        }),
    );
    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "identity JSON bridge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The seed's HTTP paths over the identity.v1 gRPC service. Errors follow grpc-gateway: {code, message, details}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "serviceToken": {"type": "http", "scheme": "bearer", "description": "A service token listed in SERVICE_TOKENS_FILE."},
            },
        },
    }))
}

fn message(pool: &DescriptorPool, name: &str) -> anyhow::Result<MessageDescriptor> {
    pool.get_message_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("{name} is not in the descriptors"))
}

fn reference(message: &MessageDescriptor) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", message.name())})
}

fn collect_schema(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) {
    if schemas.contains_key(message.name()) {
        return;
    }
    // Insert a placeholder first so recursive messages terminate.
    schemas.insert(message.name().to_owned(), Value::Null);
    let fields: Vec<FieldDescriptor> = message.fields().collect();
    let schema = object_schema(&fields, schemas);
    schemas.insert(message.name().to_owned(), schema);
}

fn object_schema(fields: &[FieldDescriptor], schemas: &mut BTreeMap<String, Value>) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name().to_owned(), field_schema(f, schemas)))
        .collect();
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// What the domain types accept, so generated clients (and fuzzers) send plausible values.
fn string_schema(name: &str) -> Value {
    match name {
        "email" | "new_email" => json!({"type": "string", "format": "email", "maxLength": 254}),
        "password" | "new_password" | "current_password" => {
            json!({"type": "string", "minLength": 1, "maxLength": PASSWORD_MAX_CHARS})
        }
        "otp" => json!({"type": "string", "pattern": "^[0-9]{6}$"}),
        _ => json!({"type": "string"}),
    }
}

fn field_schema(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    let single = match field.kind() {
        Kind::String => string_schema(field.name()),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
        // proto3 JSON writes 64-bit integers as strings.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Kind::Float | Kind::Double => json!({"type": "number"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(_) => json!({"type": "string"}),
        Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
            json!({"type": "string", "format": "date-time", "nullable": true})
        }
        // proto3 JSON writes a Struct as the JSON object it holds: here the W3C WebAuthn JSON
        // of a ceremony's options or a browser's PublicKeyCredential.
        Kind::Message(message) if message.full_name() == "google.protobuf.Struct" => {
            match webauthn_json::shape_of(field.parent_message().name(), field.name()) {
                Some(shape) => json!({
                    "allOf": [{"$ref": format!("#/components/schemas/{shape}")}],
                    "nullable": true,
                }),
                None => json!({"type": "object", "additionalProperties": true, "nullable": true}),
            }
        }
        // proto3 JSON writes a field mask as its comma-separated paths.
        Kind::Message(message) if message.full_name() == "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "comma-separated field names", "example": "first_name,is_active"})
        }
        Kind::Message(message) => {
            collect_schema(&message, schemas);
            json!({"allOf": [reference(&message)], "nullable": true})
        }
    };
    if field.is_list() {
        json!({"type": "array", "items": single})
    } else {
        single
    }
}
