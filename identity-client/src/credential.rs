//! The service token every call to the `TokenService` carries.

use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, errors::InvalidMetadataValue},
    service::Interceptor,
};

/// Adds `authorization: Bearer <service token>` to each call, marked sensitive so no layer
/// logs it.
#[derive(Clone)]
pub struct ServiceToken(AsciiMetadataValue);

impl ServiceToken {
    pub(crate) fn new(token: &str) -> Result<Self, InvalidMetadataValue> {
        let mut value: AsciiMetadataValue = format!("Bearer {}", token.trim()).parse()?;
        value.set_sensitive(true);
        Ok(Self(value))
    }
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceToken(***)")
    }
}

impl Interceptor for ServiceToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
