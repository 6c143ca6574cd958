terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: pass bucket, key, region (and use_lockfile or
  # dynamodb_table) with `terraform init -backend-config=...`. See README.md.
  backend "s3" {}
}
