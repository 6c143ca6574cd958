//! The expected token in AWS SSM Parameter Store (a SecureString, read with
//! decryption).

use async_trait::async_trait;
use aws_sdk_ssm::Client;

use super::{SecretError, SecretSource};
use crate::aws::describe;

pub struct SsmParameter {
    client: Client,
    name: String,
}

impl SsmParameter {
    /// IAM actions this adapter calls.
    pub const ACTIONS: &[&str] = &["ssm:GetParameter"];

    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl SecretSource for SsmParameter {
    async fn fetch(&self) -> Result<String, SecretError> {
        let output = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| SecretError(describe(&e)))?;
        output
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| SecretError(format!("parameter {} has no value", self.name)))
    }
}
