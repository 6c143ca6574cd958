//! The HTTP function: the shared API router behind lambda_http.

use runtime_lambda::{http, manifest};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    if manifest::print_if_requested(manifest::api) {
        return Ok(());
    }
    let router = http::router().await?;
    lambda_http::run(router).await
}
