# Roles GitHub Actions assumes through OIDC (only when github_repository is
# set):
#
# - deploy: pushes the image and rolls the ECS services (or updates the Lambda
#   code); usable from var.github_branch (and var.github_environment).
# - terraform_plan: read-only (ReadOnlyAccess); usable from pull requests and
#   var.github_branch. Plans run with -lock=false, as the role cannot write the
#   state lock.
# - terraform: applies this configuration from var.github_branch (and
#   var.github_environment). Applying creates IAM roles and policies, so this
#   role has broad rights (var.terraform_role_policy_arns, AdministratorAccess
#   by default): protect the branch, and prefer a GitHub environment with
#   required reviewers for apply jobs.

locals {
  github_oidc_url = "token.actions.githubusercontent.com"

  github_oidc_provider_arn = !local.github ? null : (
    var.create_github_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : data.aws_iam_openid_connect_provider.github[0].arn
  )

  # OIDC subjects allowed to deploy and apply.
  github_release_subjects = !local.github ? [] : concat(
    ["repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"],
    var.github_environment == null ? [] : ["repo:${var.github_repository}:environment:${var.github_environment}"],
  )

  # OIDC subjects allowed to plan: additionally pull requests.
  github_plan_subjects = !local.github ? [] : concat(
    local.github_release_subjects,
    ["repo:${var.github_repository}:pull_request"],
  )
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
  for_each = local.github ? {
    release = local.github_release_subjects
    plan    = local.github_plan_subjects
  } : {}

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
      values   = each.value
    }
  }
}

# --- deploy -------------------------------------------------------------------

resource "aws_iam_role" "deploy" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-deploy"
  description          = "GitHub Actions (${var.github_repository}): push the image, deploy ECS services or Lambda code"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["release"].json
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

# --- terraform plan (read-only) ------------------------------------------------

resource "aws_iam_role" "terraform_plan" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-terraform-plan"
  description          = "GitHub Actions (${var.github_repository}): terraform plan, read-only"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["plan"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "terraform_plan" {
  count = local.github ? 1 : 0

  role       = aws_iam_role.terraform_plan[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

# --- terraform apply (broad rights, main branch only) --------------------------

resource "aws_iam_role" "terraform" {
  count = local.github ? 1 : 0

  name                 = "${var.name}-github-terraform"
  description          = "GitHub Actions (${var.github_repository}): terraform apply from ${var.github_branch}; broad rights"
  assume_role_policy   = data.aws_iam_policy_document.github_assume["release"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "terraform" {
  # checkov:skip=CKV_AWS_274: Applying this configuration creates IAM roles and policies, which needs administrative rights; the role is limited to the protected branch (and environment) of one repository.
  for_each = local.github ? toset(var.terraform_role_policy_arns) : toset([])

  role       = aws_iam_role.terraform[0].name
  policy_arn = each.value
}
