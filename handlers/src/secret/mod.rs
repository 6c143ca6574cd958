//! The secret port: where the expected API token is kept.

pub mod fixed;
#[cfg(feature = "aws")]
pub mod ssm;

use async_trait::async_trait;

/// A secret that could not be read. The text is for logs, never for clients,
/// and never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret unavailable: {0}")]
pub struct SecretError(pub String);

#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// Reads the current value.
    async fn fetch(&self) -> Result<String, SecretError>;
}
