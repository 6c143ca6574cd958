provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Project   = var.name
        ManagedBy = "terraform"
      },
      var.tags,
    )
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

# Used only when var.availability_zones is empty: then the first az_count zones
# (sorted by name) are taken, so a zone AWS adds later does not move subnets.
data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: Only the first az_count zones are used; pin them with the availability_zones variable.
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}
