# Rehearsal only (see rehearsal.tf): merged into the configuration's own
# terraform and provider blocks, changing nothing else.
#
# - State in a local file of the temporary copy, not in S3.
# - Every service the configuration uses goes to moto. A service missing
#   here would go to the real AWS endpoint and fail on the fake credentials,
#   so a resource of a new service fails the rehearsal until it is added.
# - Credentials come from the environment (fake keys, one per role, so the
#   rehearsal can tell who made each call). skip_metadata_api_check keeps the
#   provider from probing the EC2 instance metadata address, off loopback.
# - Path-style S3 requests: moto is an IP address, not a DNS name.
# - max_retries = 3: an operation moto does not support fails within seconds
#   instead of being retried for about 15 minutes (the default 25 attempts),
#   while a connection the emulator drops under load ("use of closed network
#   connection", seen once in CI) is still retried, as the SDK does against AWS.

terraform {
  backend "local" {}
}

provider "aws" {
  skip_metadata_api_check = true
  s3_use_path_style       = true
  max_retries             = 3

  endpoints {
    applicationautoscaling = var.rehearsal_endpoint
    cloudwatch             = var.rehearsal_endpoint
    ec2                    = var.rehearsal_endpoint
    ecr                    = var.rehearsal_endpoint
    ecs                    = var.rehearsal_endpoint
    elbv2                  = var.rehearsal_endpoint
    iam                    = var.rehearsal_endpoint
    lambda                 = var.rehearsal_endpoint
    logs                   = var.rehearsal_endpoint
    s3                     = var.rehearsal_endpoint
    secretsmanager         = var.rehearsal_endpoint
    sqs                    = var.rehearsal_endpoint
    ssm                    = var.rehearsal_endpoint
    sts                    = var.rehearsal_endpoint
  }
}
