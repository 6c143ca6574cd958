terraform {
  # 1.11: write-only arguments (the token's value_wo) and ephemeral resources.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Exact: plan (pull requests) and apply (main) run the same provider
      # build. The workflows and the rehearsal check this pin (see
      # tests/test_workflows.py); raise it in one commit for both.
      version = "= 5.100.0"
    }
  }

  # Partial configuration: pass bucket, key and region (and use_lockfile=true)
  # with `terraform init -backend-config=...`; the Terraform workflow takes
  # them from production.tfvars.json. See README.md.
  backend "s3" {}
}
