# Roles GitHub Actions assumes through OIDC (only when github_repository is
# set). Each trusts exactly one OIDC subject, so each is usable only by the
# jobs meant to use it:
#
# | role          | subject (who presents it)                                   | can                                              |
# |---------------|-------------------------------------------------------------|--------------------------------------------------|
# | deploy        | environment github_deploy_environment (Release and Deploy   | push images, roll the ECS services out, update   |
# |               | jobs; the environment admits only the main branch)          | the Lambda code                                  |
# | terraform     | environment github_terraform_environment (the apply job of  | everything (terraform_role_policy_arns,          |
# |               | the Terraform workflow, behind required reviewers)          | AdministratorAccess by default)                  |
# | terraform_plan| pull_request (plan jobs of pull requests from this          | read the current state object and what a plan    |
# |               | repository's branches)                                      | without refresh reads; explicitly denied every   |
# |               |                                                             | data and secret read                             |
# | system_test   | ref refs/heads/github_branch (jobs of main without an       | read the token and stored objects, find the      |
# |               | environment)                                                | deployment's settings                            |
#
# A job that runs in an environment presents `repo:<repo>:environment:<name>`,
# one that does not presents `repo:<repo>:ref:<ref>` (or `:pull_request`), so
# no job can present two of these subjects. The environments' protection rules
# (deployment branches: main only; required reviewers for the Terraform one)
# are set in the repository settings: see README.md.

locals {
  github_oidc_url = "token.actions.githubusercontent.com"

  github_oidc_provider_arn = !local.github ? null : (
    var.create_github_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : data.aws_iam_openid_connect_provider.github[0].arn
  )

  github_subjects = !local.github ? {} : {
    deploy         = "repo:${var.github_repository}:environment:${var.github_deploy_environment}"
    terraform      = "repo:${var.github_repository}:environment:${var.github_terraform_environment}"
    terraform_plan = "repo:${var.github_repository}:pull_request"
    system_test    = "repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"
  }

  state_bucket_arn = var.terraform_state_bucket == null ? null : "arn:${local.partition}:s3:::${var.terraform_state_bucket}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count = local.github && var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_oidc_url}"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_openid_connect_provider" "github" {
  count = local.github && !var.create_github_oidc_provider ? 1 : 0

  url = "https://${local.github_oidc_url}"
}

data "aws_iam_policy_document" "github_assume" {
  for_each = local.github_subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_url}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_url}:sub"
      values   = [each.value]
    }
  }
}

# --- deploy -------------------------------------------------------------------

resource "aws_iam_role" "deploy" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-deploy"
  description          = "GitHub Actions (${var.github_repository}, environment ${var.github_deploy_environment}): push the image, deploy ECS services or Lambda code"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["deploy"].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "deploy" {
  count = local.github ? 1 : 0

  statement {
    sid = "EcrAuth"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PushImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:DescribeRepositories",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [aws_ecr_repository.app.arn]
  }

  dynamic "statement" {
    for_each = local.fargate ? [1] : []

    content {
      sid = "TaskDefinitions"
      # Task definition registration and lookup have no resource-level permissions.
      actions = [
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.fargate ? [1] : []

    content {
      sid = "Services"
      actions = [
        "ecs:DescribeServices",
        "ecs:UpdateService",
      ]
      resources = [
        aws_ecs_service.api[0].id,
        aws_ecs_service.worker[0].id,
      ]
    }
  }

  dynamic "statement" {
    for_each = local.fargate ? [1] : []

    content {
      sid     = "PassTaskRoles"
      actions = ["iam:PassRole"]
      resources = [
        aws_iam_role.api_task[0].arn,
        aws_iam_role.worker_task[0].arn,
        aws_iam_role.execution[0].arn,
      ]

      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ecs-tasks.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.lambda ? [1] : []

    content {
      sid = "UpdateFunctionCode"
      actions = [
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:UpdateFunctionCode",
      ]
      resources = [
        aws_lambda_function.api[0].arn,
        aws_lambda_function.worker[0].arn,
      ]
    }
  }
}

resource "aws_iam_role_policy" "deploy" {
  count = local.github ? 1 : 0

  name   = "deploy"
  role   = aws_iam_role.deploy[0].id
  policy = data.aws_iam_policy_document.deploy[0].json
}

# --- terraform plan (pull requests) ---------------------------------------------
#
# Pull-request plans run `terraform plan -refresh=false -lock=false`: they
# compare the configuration with the state and read no resource, so this role
# needs only the state object and what the configuration's data sources and
# ephemeral resources read (scripts/rehearse.sh records every call such a plan
# makes and checks each against this policy). Refreshing would need
# ssm:GetParameter with decryption on the token (the provider reads the
# parameter that way), which no pull request may have; drift shows in the
# apply job's plan on main, which refreshes with the terraform role.
#
# The explicit denies hold even if someone attaches a broader policy later:
# no pull-request workflow may read the token, a stored email, a queued
# message, or an old version of the state (states written before the token
# moved to a write-only argument hold it in plain text).

resource "aws_iam_role" "terraform_plan" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-terraform-plan"
  description          = "GitHub Actions (${var.github_repository}, pull requests): terraform plan without refresh; no data or secret reads"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["terraform_plan"].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "terraform_plan" {
  count = local.github ? 1 : 0

  dynamic "statement" {
    for_each = var.terraform_state_bucket == null ? [] : [1]

    content {
      sid       = "ReadCurrentState"
      actions   = ["s3:GetObject"]
      resources = ["${local.state_bucket_arn}/${var.terraform_state_key}"]
    }
  }

  dynamic "statement" {
    for_each = var.terraform_state_bucket == null ? [] : [1]

    content {
      sid       = "ListStateBucket"
      actions   = ["s3:ListBucket"]
      resources = [local.state_bucket_arn]
    }
  }

  statement {
    sid = "DataSources"
    # What the data sources and the ephemeral token generator call; none of
    # these actions has resource-level permissions. GetRandomPassword returns
    # a new random string and reads nothing.
    actions = [
      "ec2:DescribeAvailabilityZones",
      "lambda:ListFunctions",
      "secretsmanager:GetRandomPassword",
    ]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.create_github_oidc_provider ? [] : [1]

    content {
      sid = "FindOidcProvider"
      actions = [
        "iam:GetOpenIDConnectProvider",
        "iam:ListOpenIDConnectProviders",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.terraform_state_bucket == null ? [] : [1]

    content {
      sid    = "DenyStateHistoryAndWrites"
      effect = "Deny"
      actions = [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:GetObjectVersion",
        "s3:ListBucketVersions",
        "s3:PutObject",
      ]
      resources = [
        local.state_bucket_arn,
        "${local.state_bucket_arn}/*",
      ]
    }
  }

  statement {
    sid       = "DenyStoredEmails"
    effect    = "Deny"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"]
    resources = ["${aws_s3_bucket.emails.arn}/*"]
  }

  statement {
    sid    = "DenySecrets"
    effect = "Deny"
    actions = [
      "kms:Decrypt",
      "secretsmanager:GetSecretValue",
      "ssm:GetParameter",
      "ssm:GetParameterHistory",
      "ssm:GetParameters",
      "ssm:GetParametersByPath",
    ]
    resources = ["*"]
  }

  statement {
    sid    = "DenyQueuedMessages"
    effect = "Deny"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:PurgeQueue",
      "sqs:ReceiveMessage",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "terraform_plan" {
  count = local.github ? 1 : 0

  name   = "plan-without-refresh"
  role   = aws_iam_role.terraform_plan[0].id
  policy = data.aws_iam_policy_document.terraform_plan[0].json
}

# --- terraform apply (broad rights, one environment only) ----------------------

resource "aws_iam_role" "terraform" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-terraform"
  description          = "GitHub Actions (${var.github_repository}, environment ${var.github_terraform_environment}): terraform apply; broad rights"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["terraform"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "terraform" {
  # checkov:skip=CKV_AWS_274: Applying this configuration creates IAM roles and policies, which needs administrative rights; only jobs in the protected Terraform environment of one repository can assume the role.
  for_each = local.github ? toset(var.terraform_role_policy_arns) : toset([])

  role       = aws_iam_role.terraform[0].name
  policy_arn = each.value
}

# --- system test (main only) ---------------------------------------------------

resource "aws_iam_role" "system_test" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-system-test"
  description          = "GitHub Actions (${var.github_repository}, ${var.github_branch} only): end-to-end test of the deployed system"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["system_test"].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "system_test" {
  count = local.github ? 1 : 0

  statement {
    sid       = "ReadToken"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.token.arn]
  }

  # The test reads back the object of the email it posted.
  statement {
    sid       = "ReadStoredEmails"
    actions   = ["s3:GetObject"]
    resources = [local.email_objects_arn]
  }

  statement {
    sid = "FindDeployment"
    # Neither call has resource-level permissions.
    actions = [
      "ecs:DescribeTaskDefinition",
      "elasticloadbalancing:DescribeLoadBalancers",
    ]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.fargate ? [1] : []

    content {
      sid       = "FindServices"
      actions   = ["ecs:DescribeServices"]
      resources = [aws_ecs_service.api[0].id, aws_ecs_service.worker[0].id]
    }
  }

  dynamic "statement" {
    for_each = local.lambda ? [1] : []

    content {
      sid       = "FindFunctions"
      actions   = ["lambda:GetFunctionConfiguration"]
      resources = [aws_lambda_function.api[0].arn, aws_lambda_function.worker[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "system_test" {
  count = local.github ? 1 : 0

  name   = "system-test"
  role   = aws_iam_role.system_test[0].id
  policy = data.aws_iam_policy_document.system_test[0].json
}
