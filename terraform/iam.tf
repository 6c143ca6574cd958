# Roles of the running system. Each role gets exactly the AWS API calls its
# binary makes (tests/test_consistency.py compares them with
# `queue2bucket manifest`), on the specific resources involved.
#
# The claim check (emails too large for a queue message): the API writes the
# email below var.s3_staging_prefix and queues a pointer; the worker reads it
# there, stores it below var.s3_key_prefix and deletes the staged object. So
# the API may write only below the staging prefix (never where stored emails
# live), and the worker may read and delete only below it (never a stored
# email). The worker may also list the bucket, limited to the staging prefix
# and the key prefix: S3 answers a GetObject of a missing key with 404 only to
# a caller that may list it (403 otherwise), and a redelivered pointer whose
# staged object is gone is "stored already" only if a listing finds the
# email's key (else it is lost, and left for the dead-letter queue). Names,
# never contents: the worker still cannot read a stored email.

# --- Fargate: task execution role (pulls the image, writes logs) -------------

data "aws_iam_policy_document" "ecs_execution_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Task roles: only ECS tasks of this account may assume them.
data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  count = local.fargate ? 1 : 0

  name               = "${var.name}-execution"
  description        = "ECS task execution role of ${var.name}: pulls the image and writes container logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_assume.json
}

data "aws_iam_policy_document" "execution" {
  count = local.fargate ? 1 : 0

  statement {
    sid = "EcrAuth"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.app.arn]
  }

  statement {
    sid = "WriteLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = [
      "${aws_cloudwatch_log_group.api[0].arn}:*",
      "${aws_cloudwatch_log_group.worker[0].arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "execution" {
  count = local.fargate ? 1 : 0

  name   = "pull-image-write-logs"
  role   = aws_iam_role.execution[0].id
  policy = data.aws_iam_policy_document.execution[0].json
}

# --- Fargate: API task role ---------------------------------------------------

resource "aws_iam_role" "api_task" {
  count = local.fargate ? 1 : 0

  name               = "${var.name}-api-task"
  description        = "Task role of the ${var.name} API: publishes to the queue, reads the token, stages large emails"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "api" {
  # GetQueueAttributes: the API reads the queue's MaximumMessageSize, above
  # which it stages an email instead of queueing it inline.
  statement {
    sid = "PublishMessages"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "StageLargeEmails"
    actions   = ["s3:PutObject"]
    resources = [local.staged_objects_arn]
  }

  # The parameter uses the AWS-managed aws/ssm key, so no kms:Decrypt grant is
  # needed; add one on the key if you switch to a customer-managed key.
  statement {
    sid       = "ReadToken"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.token.arn]
  }
}

resource "aws_iam_role_policy" "api_task" {
  count = local.fargate ? 1 : 0

  name   = "publish-messages-read-token"
  role   = aws_iam_role.api_task[0].id
  policy = data.aws_iam_policy_document.api.json
}

# --- Fargate: worker task role ------------------------------------------------

resource "aws_iam_role" "worker_task" {
  count = local.fargate ? 1 : 0

  name               = "${var.name}-worker-task"
  description        = "Task role of the ${var.name} worker: consumes the queue, writes message objects, takes staged ones"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "ConsumeMessages"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "StoreMessages"
    actions   = ["s3:PutObject"]
    resources = [local.email_objects_arn]
  }

  statement {
    sid = "TakeStagedEmails"
    actions = [
      "s3:GetObject",
      "s3:DeleteObject",
    ]
    resources = [local.staged_objects_arn]
  }

  # So that a staged object that is gone answers 404, and that the email's own
  # key can then be found by name (see the top).
  statement {
    sid       = "FindStagedEmails"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.emails.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.s3_staging_prefix}*", "${var.s3_key_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "worker_task" {
  count = local.fargate ? 1 : 0

  name   = "consume-messages-store-objects"
  role   = aws_iam_role.worker_task[0].id
  policy = data.aws_iam_policy_document.worker.json
}

# --- Lambda: function roles ---------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda_api" {
  count = local.lambda ? 1 : 0

  name               = "${var.name}-lambda-api"
  description        = "Role of the ${var.name} API function: publishes to the queue, reads the token, stages large emails, writes its logs"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda_api" {
  count = local.lambda ? 1 : 0

  statement {
    sid = "PublishMessages"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "StageLargeEmails"
    actions   = ["s3:PutObject"]
    resources = [local.staged_objects_arn]
  }

  statement {
    sid       = "ReadToken"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.token.arn]
  }

  # The log group is created by Terraform, so logs:CreateLogGroup is not granted.
  statement {
    sid = "WriteLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = ["${aws_cloudwatch_log_group.lambda_api[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda_api" {
  count = local.lambda ? 1 : 0

  name   = "publish-messages-read-token-write-logs"
  role   = aws_iam_role.lambda_api[0].id
  policy = data.aws_iam_policy_document.lambda_api[0].json
}

resource "aws_iam_role" "lambda_worker" {
  count = local.lambda ? 1 : 0

  name               = "${var.name}-lambda-worker"
  description        = "Role of the ${var.name} worker function: writes message objects, takes staged ones; its SQS event source polls the queue"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda_worker" {
  count = local.lambda ? 1 : 0

  statement {
    sid       = "StoreMessages"
    actions   = ["s3:PutObject"]
    resources = [local.email_objects_arn]
  }

  statement {
    sid = "TakeStagedEmails"
    actions = [
      "s3:GetObject",
      "s3:DeleteObject",
    ]
    resources = [local.staged_objects_arn]
  }

  statement {
    sid       = "FindStagedEmails"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.emails.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.s3_staging_prefix}*", "${var.s3_key_prefix}*"]
    }
  }

  # Used by the SQS event source mapping (Lambda polls with the function's role).
  statement {
    sid = "EventSourceMapping"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid = "WriteLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = ["${aws_cloudwatch_log_group.lambda_worker[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda_worker" {
  count = local.lambda ? 1 : 0

  name   = "store-objects-poll-queue-write-logs"
  role   = aws_iam_role.lambda_worker[0].id
  policy = data.aws_iam_policy_document.lambda_worker[0].json
}
