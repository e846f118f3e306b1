//! The bridge's route table, read from the `google.api.http` annotations of the contract, so
//! there is no second, hand-kept table to drift.

use prost_reflect::{DescriptorPool, Value};

use crate::pb;

/// The gRPC services the annotations are read from.
pub const SERVICES: &[&str] = &["identity.v1.IdentityService", "identity.v1.TokenService"];

/// One annotated RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// RPC name, e.g. `Register`.
    pub rpc: String,
    /// HTTP method.
    pub method: axum::http::Method,
    /// Path template without the trailing slash, e.g. `/accounts/api/users/{id}`.
    pub template: String,
    /// Whether the request message comes from the body (`body: "*"`).
    pub has_body: bool,
    /// Names of the `{params}` in the template.
    pub path_params: Vec<String>,
    /// The request message's full name.
    pub request_type: String,
    /// Its boolean fields: a query string's `true` and `false` are booleans there.
    pub bool_fields: Vec<String>,
    /// Its `google.protobuf.FieldMask` fields, which proto3 JSON writes as one string of
    /// comma-separated paths.
    pub field_mask_fields: Vec<String>,
    /// The response message's full name.
    pub response_type: String,
}

impl HttpRoute {
    /// The template with the trailing slash the seed documents.
    #[must_use]
    pub fn slashed(&self) -> String {
        format!("{}/", self.template)
    }
}

/// The descriptors of the contract, with options kept.
///
/// # Errors
/// When the embedded descriptor set does not decode.
pub fn descriptor_pool() -> anyhow::Result<DescriptorPool> {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| anyhow::anyhow!("decoding descriptors: {e}"))
}

/// Every annotated RPC of the services.
///
/// # Errors
/// When the descriptors lack a service or an annotation is malformed.
pub fn annotated_routes(pool: &DescriptorPool) -> anyhow::Result<Vec<HttpRoute>> {
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or_else(|| anyhow::anyhow!("google.api.http is not in the descriptors"))?;
    let mut methods = Vec::new();
    for name in SERVICES {
        let service = pool
            .get_service_by_name(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not in the descriptors"))?;
        methods.extend(service.methods());
    }
    let mut routes = Vec::new();
    for method in methods {
        let options = method.options();
        if !options.has_extension(&http) {
            continue;
        }
        let Value::Message(rule) = options.get_extension(&http).into_owned() else {
            anyhow::bail!("{}: google.api.http is not a message", method.name());
        };
        let (verb, template) = ["get", "post", "put", "delete", "patch"]
            .into_iter()
            .find_map(|verb| match rule.get_field_by_name(verb).as_deref() {
                Some(Value::String(path)) if !path.is_empty() => Some((verb, path.clone())),
                _ => None,
            })
            .ok_or_else(|| anyhow::anyhow!("{}: no path in google.api.http", method.name()))?;
        let has_body = matches!(rule.get_field_by_name("body").as_deref(), Some(Value::String(body)) if body == "*");
        let path_params = template
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        routes.push(HttpRoute {
            rpc: method.name().to_owned(),
            method: verb.to_ascii_uppercase().parse()?,
            template,
            has_body,
            path_params,
            request_type: method.input().full_name().to_owned(),
            bool_fields: method
                .input()
                .fields()
                .filter(|field| matches!(field.kind(), prost_reflect::Kind::Bool))
                .map(|field| field.name().to_owned())
                .collect(),
            field_mask_fields: method
                .input()
                .fields()
                .filter(|field| {
                    matches!(field.kind(), prost_reflect::Kind::Message(m)
                        if m.full_name() == "google.protobuf.FieldMask")
                })
                .map(|field| field.name().to_owned())
                .collect(),
            response_type: method.output().full_name().to_owned(),
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::{annotated_routes, descriptor_pool};

    #[test]
    fn every_rpc_has_an_annotation_with_the_seed_path() {
        let routes = annotated_routes(&descriptor_pool().unwrap()).unwrap();
        let activate = routes.iter().find(|r| r.rpc == "Activate").unwrap();
        assert_eq!(activate.method, axum::http::Method::GET);
        assert_eq!(
            activate.slashed(),
            "/accounts/api/activate/{uidb64}/{token}/"
        );
        assert_eq!(activate.path_params, ["uidb64", "token"]);
        assert!(
            routes
                .iter()
                .find(|r| r.rpc == "Register")
                .unwrap()
                .has_body
        );
        let introspect = routes.iter().find(|r| r.rpc == "IntrospectToken").unwrap();
        assert_eq!(introspect.template, "/accounts/api/token/introspect");
        assert_eq!(routes.len(), 41);
        let list = routes.iter().find(|r| r.rpc == "ListUsers").unwrap();
        assert_eq!(list.bool_fields, ["is_verified", "is_active", "is_staff"]);
        let update = routes.iter().find(|r| r.rpc == "UpdateUser").unwrap();
        assert_eq!(update.field_mask_fields, ["update_mask"]);
    }
}
