//! A token given at start-up (local mode): no store to ask.

use async_trait::async_trait;

use super::{SecretError, SecretSource};

pub struct FixedSecret(String);

impl FixedSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

#[async_trait]
impl SecretSource for FixedSecret {
    async fn fetch(&self) -> Result<String, SecretError> {
        Ok(self.0.clone())
    }
}
