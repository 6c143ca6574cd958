# Lambda hosting (hosting = "lambda"): the API function behind the ALB (lambda
# target group) and the worker function fed by an SQS event source mapping.
# Same queue, bucket, parameter and least-privilege rules as on Fargate.
#
# Artifacts come from scripts/lambda-arm64.sh, which builds both architectures
# (target/lambda/<architecture>/<binary>/bootstrap.zip), either as local files
# or from S3 (the same layout); var.architecture picks the pair. Terraform
# uploads them when it creates the functions; afterwards the code is updated
# by the deploy workflow (lambda:UpdateFunctionCode), so Terraform ignores
# code changes and a plan never needs the zip files.
#
# The architecture goes with the code: Lambda changes a function's
# architectures only in UpdateFunctionCode, together with new code. So
# Terraform sets it when it creates a function and ignores it afterwards,
# and the deploy (scripts/deploy.sh lambda target/lambda/<architecture>)
# sets it from the zips it uploads. Were Terraform to change it, the
# provider would send the new architecture with the zip recorded at
# creation, code of the other architecture (or fail to find it).
#
# The API is reached through the ALB only. A public Function URL would need a
# lambda:InvokeFunction grant restricted to function URL calls
# (lambda:InvokedViaFunctionUrl), which this provider version cannot express;
# granting it without that condition would let any AWS principal invoke the
# function directly.

# Functions that exist already. Creating a function needs its zip; a function
# that exists does not (the deploy workflow owns its code), so plans of an
# existing deployment run without the zips, and a plan that would create a
# function without its zip fails here, before anything is changed (switching
# hosting to lambda would otherwise remove the ECS services and then fail).
data "aws_lambda_functions" "existing" {
  count = local.lambda && !local.lambda_use_s3 ? 1 : 0
}

locals {
  lambda_existing_functions = flatten(data.aws_lambda_functions.existing[*].function_names)

  # METRICS_NAMESPACE: the namespace the dashboard and alarms read (dashboard.tf).
  # S3_BUCKET_NAME and S3_STAGING_PREFIX on the API: where it stages emails
  # too large for a queue message (the claim check; see iam.tf).
  lambda_api_environment = {
    SQS_QUEUE_URL     = aws_sqs_queue.main.url
    TOKEN_PARAM_NAME  = aws_ssm_parameter.token.name
    S3_BUCKET_NAME    = aws_s3_bucket.emails.bucket
    S3_STAGING_PREFIX = var.s3_staging_prefix
    METRICS_NAMESPACE = var.metrics_namespace
    RUNTIME_THREADS   = tostring(local.lambda_api_runtime_threads)
  }

  lambda_worker_environment = {
    S3_BUCKET_NAME    = aws_s3_bucket.emails.bucket
    S3_KEY_PREFIX     = var.s3_key_prefix
    S3_KEY_LAYOUT     = var.s3_key_layout
    S3_STAGING_PREFIX = var.s3_staging_prefix
    METRICS_NAMESPACE = var.metrics_namespace
    RUNTIME_THREADS   = tostring(local.lambda_worker_runtime_threads)
  }
}

resource "aws_cloudwatch_log_group" "lambda_api" {
  # checkov:skip=CKV_AWS_158: Log groups use the CloudWatch Logs default encryption; no customer-managed KMS key by design.
  # checkov:skip=CKV_AWS_338: Retention is the log_retention_days variable (30 days by default) to keep costs low; raise it if your policy requires a year.
  count = local.lambda ? 1 : 0

  name              = "/aws/lambda/${local.lambda_api_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "lambda_worker" {
  # checkov:skip=CKV_AWS_158: Log groups use the CloudWatch Logs default encryption; no customer-managed KMS key by design.
  # checkov:skip=CKV_AWS_338: Retention is the log_retention_days variable (30 days by default) to keep costs low; raise it if your policy requires a year.
  count = local.lambda ? 1 : 0

  name              = "/aws/lambda/${local.lambda_worker_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "api" {
  # checkov:skip=CKV_AWS_50: X-Ray tracing is not used; requests are traced through structured logs.
  # checkov:skip=CKV_AWS_115: No reserved concurrency: new accounts cannot reserve any, and the ALB target is bounded by the account limit.
  # checkov:skip=CKV_AWS_116: Invoked synchronously by the ALB; a dead-letter queue applies only to asynchronous invocations.
  # checkov:skip=CKV_AWS_117: Not in a VPC by design: the function only calls public AWS APIs and needs no NAT or endpoints.
  # checkov:skip=CKV_AWS_173: Environment variables hold no secrets (queue URL, parameter name, bucket name, staging prefix) and use Lambda's default encryption.
  # checkov:skip=CKV_AWS_272: Code signing is not used; artifacts come from the repository's own CI.
  count = local.lambda ? 1 : 0

  function_name = local.lambda_api_name
  description   = "${var.name} API: POST /email publishes to the queue"
  role          = aws_iam_role.lambda_api[0].arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]
  memory_size   = var.lambda_api_memory
  timeout       = var.lambda_api_timeout

  filename         = local.lambda_use_s3 ? null : local.lambda_api_zip
  source_code_hash = local.lambda_use_s3 ? null : (fileexists(local.lambda_api_zip) ? filebase64sha256(local.lambda_api_zip) : null)
  s3_bucket        = local.lambda_use_s3 ? var.lambda_s3_bucket : null
  s3_key           = local.lambda_use_s3 ? local.lambda_api_s3_key : null

  environment {
    variables = local.lambda_api_environment
  }

  lifecycle {
    # Code, and the architecture that goes with it, are deployed by the
    # workflow after creation (see the top of this file).
    ignore_changes = [filename, source_code_hash, s3_bucket, s3_key, s3_object_version, architectures]

    precondition {
      condition     = local.lambda_use_s3 || fileexists(local.lambda_api_zip) || contains(local.lambda_existing_functions, local.lambda_api_name)
      error_message = "Creating the function ${local.lambda_api_name} (${var.architecture}) needs its zip ${local.lambda_api_zip}, which does not exist: build it first (scripts/lambda-arm64.sh ${var.architecture}, in the repository root; the Terraform workflow does this when hosting is lambda) or set lambda_s3_bucket."
    }

    precondition {
      condition     = var.lambda_api_timeout >= local.lambda_api_call_timeout + 2
      error_message = "lambda_api_timeout must be at least ${local.lambda_api_call_timeout + 2} s: the function's SQS and SSM calls may take ${local.lambda_api_call_timeout} s, and it answers 503 a moment before its deadline; shorter, Lambda would kill it and the ALB answer 502."
    }
  }

  depends_on = [aws_cloudwatch_log_group.lambda_api, aws_iam_role_policy.lambda_api]
}

resource "aws_lambda_permission" "api_from_alb" {
  count = local.lambda ? 1 : 0

  statement_id  = "AllowInvokeFromAlb"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.api[0].function_name
  principal     = "elasticloadbalancing.amazonaws.com"
  source_arn    = aws_lb_target_group.lambda_api[0].arn
}

resource "aws_lb_target_group_attachment" "lambda_api" {
  count = local.lambda ? 1 : 0

  target_group_arn = aws_lb_target_group.lambda_api[0].arn
  target_id        = aws_lambda_function.api[0].arn

  depends_on = [aws_lambda_permission.api_from_alb]
}

resource "aws_lambda_function" "worker" {
  # checkov:skip=CKV_AWS_50: X-Ray tracing is not used; processing is traced through structured logs.
  # checkov:skip=CKV_AWS_115: No reserved concurrency: new accounts cannot reserve any; the event source mapping's maximum_concurrency bounds it instead.
  # checkov:skip=CKV_AWS_116: Invoked by an SQS event source mapping; failed messages go to the queue's own dead-letter queue.
  # checkov:skip=CKV_AWS_117: Not in a VPC by design: the function only calls public AWS APIs and needs no NAT or endpoints.
  # checkov:skip=CKV_AWS_173: Environment variables hold no secrets (bucket name, key prefix and layout, staging prefix) and use Lambda's default encryption.
  # checkov:skip=CKV_AWS_272: Code signing is not used; artifacts come from the repository's own CI.
  count = local.lambda ? 1 : 0

  function_name = local.lambda_worker_name
  description   = "${var.name} worker: stores queued messages in S3"
  role          = aws_iam_role.lambda_worker[0].arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]
  memory_size   = var.lambda_worker_memory
  timeout       = var.lambda_worker_timeout

  filename         = local.lambda_use_s3 ? null : local.lambda_worker_zip
  source_code_hash = local.lambda_use_s3 ? null : (fileexists(local.lambda_worker_zip) ? filebase64sha256(local.lambda_worker_zip) : null)
  s3_bucket        = local.lambda_use_s3 ? var.lambda_s3_bucket : null
  s3_key           = local.lambda_use_s3 ? local.lambda_worker_s3_key : null

  environment {
    variables = local.lambda_worker_environment
  }

  lifecycle {
    ignore_changes = [filename, source_code_hash, s3_bucket, s3_key, s3_object_version, architectures]

    precondition {
      condition     = local.lambda_use_s3 || fileexists(local.lambda_worker_zip) || contains(local.lambda_existing_functions, local.lambda_worker_name)
      error_message = "Creating the function ${local.lambda_worker_name} (${var.architecture}) needs its zip ${local.lambda_worker_zip}, which does not exist: build it first (scripts/lambda-arm64.sh ${var.architecture}, in the repository root; the Terraform workflow does this when hosting is lambda) or set lambda_s3_bucket."
    }

    precondition {
      condition     = var.lambda_worker_timeout >= local.lambda_worker_call_timeout + 2
      error_message = "lambda_worker_timeout must be at least ${local.lambda_worker_call_timeout + 2} s: one S3 call may take ${local.lambda_worker_call_timeout} s, and the function reports what it could not store a moment before its deadline."
    }
  }

  depends_on = [aws_cloudwatch_log_group.lambda_worker, aws_iam_role_policy.lambda_worker]
}

resource "aws_lambda_event_source_mapping" "worker" {
  count = local.lambda ? 1 : 0

  function_name           = aws_lambda_function.worker[0].arn
  event_source_arn        = aws_sqs_queue.main.arn
  batch_size              = var.lambda_worker_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.lambda_worker_max_concurrency
  }

  lifecycle {
    precondition {
      condition     = local.visibility_timeout_seconds >= var.lambda_worker_timeout
      error_message = "The queue's visibility timeout must not be shorter than the worker function's timeout."
    }
  }
}
