//! The HTTP function: the shared API router behind lambda_http.

use runtime_lambda::{config, http, manifest};

fn main() -> Result<(), lambda_http::Error> {
    if manifest::print_if_requested(manifest::api) {
        return Ok(());
    }
    config::runtime()?.block_on(async {
        let router = http::router().await?;
        lambda_http::run(router).await
    })
}
