locals {
  fargate = var.hosting == "fargate"
  lambda  = var.hosting == "lambda"
  https   = var.certificate_arn != null
  github  = var.github_repository != null
  private = var.private_networking && local.fargate

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  azs = (
    length(var.availability_zones) > 0
    ? var.availability_zones
    : slice(sort(data.aws_availability_zones.available.names), 0, var.az_count)
  )
  az_count = length(var.availability_zones) > 0 ? length(var.availability_zones) : var.az_count

  # What the API answers 200 on for load balancer health checks
  # (`queue2bucket manifest` prints it as health_check_path).
  health_check_path = "/"

  # The ECS stop timeout: on SIGTERM the worker finishes in-flight messages
  # within it, so the visibility timeout must be comfortably above.
  stop_timeout_seconds = 30

  # AWS recommends a visibility timeout of at least six times the function
  # timeout for SQS event sources.
  visibility_timeout_seconds = coalesce(
    var.queue_visibility_timeout_seconds,
    local.lambda ? max(60, 6 * var.lambda_worker_timeout) : 60,
  )

  dlq_retention_seconds = 1209600 # 14 days, the maximum

  # The longest one AWS call of each function may take, all retries
  # included (the binaries' manifests print it as aws_call_timeout_secs).
  # A function's timeout must leave room above it, plus the half second the
  # function keeps back to answer before its deadline (MARGIN in
  # runtime-lambda/src/deadline.rs); lambda.tf asks for 2 s above it.
  lambda_api_call_timeout    = 5
  lambda_worker_call_timeout = 30

  token_parameter_name = coalesce(var.token_parameter_name, "/${var.name}/api-token")

  # The image the task definition templates name. The deploy workflow owns the
  # image that runs (see ecs.tf); this one is named only until the first deploy.
  image = "${aws_ecr_repository.app.repository_url}:${coalesce(var.image_tag, local.undeployed_image_tag)}"

  # Names no image: services Terraform creates before any deploy launch tasks
  # that fail to pull it, until the deployment circuit breaker (ecs.tf) marks
  # the first deployment failed and stops launching; nothing runs until the
  # deploy workflow registers a revision with a real image.
  undeployed_image_tag = "undeployed"

  api_service_name    = "${var.name}-api"
  worker_service_name = "${var.name}-worker"
  lambda_api_name     = "${var.name}-api"
  lambda_worker_name  = "${var.name}-worker"
  lambda_use_s3       = var.lambda_s3_bucket != null

  # RUNTIME_THREADS: one async-runtime thread per whole vCPU, at least one.
  # A task or function can see more CPUs than its share of them, and more
  # threads than vCPUs spend the share waking each other (README, Benchmarks).
  # Fargate: 1024 CPU units a vCPU; Lambda: one vCPU per 1,769 MB of memory.
  api_runtime_threads           = max(1, floor(var.api_cpu / 1024))
  worker_runtime_threads        = max(1, floor(var.worker_cpu / 1024))
  lambda_api_runtime_threads    = max(1, floor(var.lambda_api_memory / 1769))
  lambda_worker_runtime_threads = max(1, floor(var.lambda_worker_memory / 1769))

  # The one architecture variable, as ECS spells it (runtime_platform's
  # cpu_architecture: ARM64 or X86_64); Lambda takes var.architecture as is.
  ecs_cpu_architecture = upper(var.architecture)

  # The zips a function is created from: those of its architecture, where
  # scripts/lambda-arm64.sh builds them (target/lambda/<architecture>/) and
  # the same layout in lambda_s3_bucket.
  lambda_api_zip       = coalesce(var.lambda_api_zip, "../target/lambda/${var.architecture}/queue2bucket-api/bootstrap.zip")
  lambda_worker_zip    = coalesce(var.lambda_worker_zip, "../target/lambda/${var.architecture}/queue2bucket-worker/bootstrap.zip")
  lambda_api_s3_key    = coalesce(var.lambda_api_s3_key, "${var.architecture}/queue2bucket-api/bootstrap.zip")
  lambda_worker_s3_key = coalesce(var.lambda_worker_s3_key, "${var.architecture}/queue2bucket-worker/bootstrap.zip")

  api_service_arn    = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${var.name}/${local.api_service_name}"
  worker_service_arn = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${var.name}/${local.worker_service_name}"
  lambda_api_arn     = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.lambda_api_name}"
  lambda_worker_arn  = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.lambda_worker_name}"

  # Objects the worker may write: only below its key prefix. This one scope
  # covers both key layouts (var.s3_key_layout): time keys
  # (<prefix><unix-seconds>-<id>.json) and hashed ones
  # (<prefix><2 hex digits>/<unix-seconds>-<id>.json) both begin with the
  # prefix, so switching the layout changes no permission.
  email_objects_arn = "${aws_s3_bucket.emails.arn}/${var.s3_key_prefix}*"

  # Staged emails (the claim check): the API may write them, the worker read
  # and delete them, only below the staging prefix.
  staged_objects_arn = "${aws_s3_bucket.emails.arn}/${var.s3_staging_prefix}*"
}
