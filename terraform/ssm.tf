# The API token. Its value is never in this code, in the Terraform state or in a
# saved plan: it goes to AWS through the write-only argument value_wo, either
# from the ephemeral api_token variable or from Secrets Manager's random
# password generator (an ephemeral resource: no secret is created there and
# nothing is stored). Terraform writes it when the parameter is created and
# again only when api_token_version changes; in between it never reads or
# compares the value, so the token can also be rotated outside Terraform:
#   aws ssm put-parameter --name <token_parameter_name> --type SecureString --overwrite --value ...
#
# Generating a password is the plan's only Secrets Manager call
# (secretsmanager:GetRandomPassword, which reads nothing: github.tf grants it
# to the plan role).

ephemeral "aws_secretsmanager_random_password" "token" {
  password_length     = 48
  exclude_punctuation = true
  include_space       = false
}

resource "aws_ssm_parameter" "token" {
  # checkov:skip=CKV_AWS_337: SecureString uses the AWS-managed aws/ssm key by design, so reading it needs only ssm:GetParameter.
  name             = local.token_parameter_name
  description      = "Token clients send to POST /email of ${var.name}"
  type             = "SecureString"
  value_wo         = var.api_token != null ? var.api_token : ephemeral.aws_secretsmanager_random_password.token.random_password
  value_wo_version = var.api_token_version
}
