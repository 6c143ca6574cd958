# The queue between API and worker, with a dead-letter queue. Messages keep
# their original enqueue timestamp when they move to the DLQ, so the DLQ keeps
# them for the maximum 14 days (never less than the main queue).

locals {
  # The largest message the queue and the dead-letter queue take, set on
  # both (a message redriven to the DLQ must fit there too). SQS allows up to
  # 1 MiB (1048576) since August 2025, but the pinned hashicorp/aws 5.100.0
  # rejects anything above 262144 at validate time ("expected
  # max_message_size to be in the range (1024 - 262144)"); provider 6.8.0
  # raised that limit (its CHANGELOG, hashicorp/terraform-provider-aws#43710),
  # a major version away. 256 KiB loses nothing: the API reads the queue's
  # MaximumMessageSize when it starts and sends anything larger through the
  # claim check (S3, below s3_staging_prefix), so emails between 256 KiB and
  # 1 MiB take that path too. Raise to 1048576 with the provider.
  queue_max_message_size = 262144
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = local.dlq_retention_seconds
  max_message_size          = local.queue_max_message_size
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "main" {
  name                       = var.name
  visibility_timeout_seconds = local.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  max_message_size           = local.queue_max_message_size
  receive_wait_time_seconds  = 10
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  lifecycle {
    precondition {
      condition     = local.dlq_retention_seconds >= var.message_retention_seconds
      error_message = "The dead-letter queue must retain messages at least as long as the main queue."
    }
    precondition {
      condition     = local.visibility_timeout_seconds > local.stop_timeout_seconds
      error_message = "The visibility timeout must exceed the ECS stop timeout (${local.stop_timeout_seconds} s) within which the worker finishes in-flight messages."
    }
    precondition {
      condition     = !local.lambda || local.visibility_timeout_seconds >= 6 * var.lambda_worker_timeout
      error_message = "With hosting = \"lambda\" the visibility timeout must be at least six times lambda_worker_timeout."
    }
  }
}

# Only the main queue may move messages into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}

# Refuse requests that do not use TLS.
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = {
    main = aws_sqs_queue.main.arn
    dlq  = aws_sqs_queue.dlq.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "main" {
  queue_url = aws_sqs_queue.main.id
  policy    = data.aws_iam_policy_document.queue_tls_only["main"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue_tls_only["dlq"].json
}
