# Fargate hosting (hosting = "fargate"): one cluster, one image, two services.
# The image's ENTRYPOINT is /usr/local/bin/queue2bucket; the services differ
# only in the command ("api" or "worker").
#
# Who owns what runs: Terraform owns the task definition *templates* (one
# family per service: roles, environment, command, sizes, logging) and the
# services; the deploy workflow (scripts/deploy.sh) owns the running image.
# A deploy registers a new revision from the family's newest revision with
# only the image replaced, and points the service at it. Terraform therefore
# ignores which revision a service runs (ignore_changes = [task_definition]),
# and its template names the image_tag variable (null: a tag that names no
# image) rather than the running image, so a plan after a deploy shows no
# change. A template change Terraform applies reaches the running tasks
# through a deploy: the Terraform workflow runs one (with the running image)
# after every apply that registered a new template revision. Applies and
# deploys share one concurrency group, so neither can act on a revision the
# other is replacing.
#
# The container definitions are HCL objects in locals (rendered with
# jsonencode) so that tests/test_consistency.py can compare their environment
# with what the binary reads.

locals {
  api_container = {
    name                   = "api"
    image                  = local.image
    command                = ["api"]
    essential              = true
    user                   = var.container_user
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout_seconds

    portMappings = [
      {
        name          = "http"
        containerPort = var.container_port
        protocol      = "tcp"
      },
    ]

    environment = [
      { name = "AWS_REGION", value = local.region },
      { name = "SQS_QUEUE_URL", value = aws_sqs_queue.main.url },
      { name = "TOKEN_PARAM_NAME", value = aws_ssm_parameter.token.name },
      { name = "S3_BUCKET_NAME", value = aws_s3_bucket.emails.bucket },
      { name = "S3_STAGING_PREFIX", value = var.s3_staging_prefix },
      { name = "PORT", value = tostring(var.container_port) },
      { name = "KEEP_ALIVE_TIMEOUT", value = tostring(var.api_keep_alive_timeout) },
      { name = "RUNTIME_THREADS", value = tostring(local.api_runtime_threads) },
      { name = "METRICS_NAMESPACE", value = var.metrics_namespace },
    ]

    # The image has no shell: the binary checks its own health.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/queue2bucket", "health"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 10
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = "/ecs/${local.api_service_name}"
        awslogs-region        = local.region
        awslogs-stream-prefix = "api"
      }
    }
  }

  worker_container = {
    name                   = "worker"
    image                  = local.image
    command                = ["worker"]
    essential              = true
    user                   = var.container_user
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout_seconds

    environment = [
      { name = "AWS_REGION", value = local.region },
      { name = "SQS_QUEUE_URL", value = aws_sqs_queue.main.url },
      { name = "S3_BUCKET_NAME", value = aws_s3_bucket.emails.bucket },
      { name = "S3_KEY_PREFIX", value = var.s3_key_prefix },
      { name = "S3_KEY_LAYOUT", value = var.s3_key_layout },
      { name = "S3_STAGING_PREFIX", value = var.s3_staging_prefix },
      { name = "POLL_INTERVAL", value = tostring(var.worker_poll_interval) },
      { name = "RUNTIME_THREADS", value = tostring(local.worker_runtime_threads) },
      { name = "METRICS_NAMESPACE", value = var.metrics_namespace },
    ]

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = "/ecs/${local.worker_service_name}"
        awslogs-region        = local.region
        awslogs-stream-prefix = "worker"
      }
    }
  }

  task_subnet_ids = local.private ? aws_subnet.private[*].id : aws_subnet.public[*].id
}

resource "aws_ecs_cluster" "this" {
  count = local.fargate ? 1 : 0

  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "api" {
  # checkov:skip=CKV_AWS_158: Log groups use the CloudWatch Logs default encryption; no customer-managed KMS key by design.
  # checkov:skip=CKV_AWS_338: Retention is the log_retention_days variable (30 days by default) to keep costs low; raise it if your policy requires a year.
  count = local.fargate ? 1 : 0

  name              = "/ecs/${local.api_service_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "worker" {
  # checkov:skip=CKV_AWS_158: Log groups use the CloudWatch Logs default encryption; no customer-managed KMS key by design.
  # checkov:skip=CKV_AWS_338: Retention is the log_retention_days variable (30 days by default) to keep costs low; raise it if your policy requires a year.
  count = local.fargate ? 1 : 0

  name              = "/ecs/${local.worker_service_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_ecs_task_definition" "api" {
  count = local.fargate ? 1 : 0

  family                   = local.api_service_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.api_cpu
  memory                   = var.api_memory
  execution_role_arn       = aws_iam_role.execution[0].arn
  task_role_arn            = aws_iam_role.api_task[0].arn
  container_definitions    = jsonencode([local.api_container])

  # var.architecture: the image is one index for linux/arm64 and linux/amd64,
  # so ECS pulls the image of the platform named here; a deploy copies it
  # into every revision it registers.
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = local.ecs_cpu_architecture
  }

  depends_on = [aws_cloudwatch_log_group.api]
}

resource "aws_ecs_task_definition" "worker" {
  count = local.fargate ? 1 : 0

  family                   = local.worker_service_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.worker_cpu
  memory                   = var.worker_memory
  execution_role_arn       = aws_iam_role.execution[0].arn
  task_role_arn            = aws_iam_role.worker_task[0].arn
  container_definitions    = jsonencode([local.worker_container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = local.ecs_cpu_architecture
  }

  depends_on = [aws_cloudwatch_log_group.worker]
}

resource "aws_ecs_service" "api" {
  # checkov:skip=CKV_AWS_333: Tasks in public subnets need a public IP to reach AWS APIs without a NAT gateway; set private_networking = true to turn it off.
  count = local.fargate ? 1 : 0

  name                               = local.api_service_name
  cluster                            = aws_ecs_cluster.this[0].id
  task_definition                    = aws_ecs_task_definition.api[0].arn
  desired_count                      = var.api_min_capacity
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.task_subnet_ids
    security_groups  = [aws_security_group.api[0].id]
    assign_public_ip = !local.private
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api[0].arn
    container_name   = local.api_container.name
    container_port   = var.container_port
  }

  lifecycle {
    # Autoscaling owns the desired count after creation; the deploy workflow
    # owns the revision that runs (see the top of this file).
    ignore_changes = [desired_count, task_definition]
  }

  # The target group must be attached to the load balancer first.
  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}

resource "aws_ecs_service" "worker" {
  # checkov:skip=CKV_AWS_333: Tasks in public subnets need a public IP to reach AWS APIs without a NAT gateway; set private_networking = true to turn it off.
  count = local.fargate ? 1 : 0

  name                               = local.worker_service_name
  cluster                            = aws_ecs_cluster.this[0].id
  task_definition                    = aws_ecs_task_definition.worker[0].arn
  desired_count                      = var.worker_min_capacity
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.task_subnet_ids
    security_groups  = [aws_security_group.worker[0].id]
    assign_public_ip = !local.private
  }

  lifecycle {
    ignore_changes = [desired_count, task_definition]
  }
}

# --- Autoscaling -------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  count = local.fargate ? 1 : 0

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this[0].name}/${aws_ecs_service.api[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.api_min_capacity
  max_capacity       = var.api_max_capacity

  lifecycle {
    precondition {
      condition     = var.api_max_capacity >= var.api_min_capacity
      error_message = "api_max_capacity must be at least api_min_capacity."
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  count = local.fargate ? 1 : 0

  name               = "${local.api_service_name}-requests-per-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api[0].service_namespace
  resource_id        = aws_appautoscaling_target.api[0].resource_id
  scalable_dimension = aws_appautoscaling_target.api[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.api_requests_per_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.api[0].arn_suffix}"
    }
  }
}

resource "aws_appautoscaling_target" "worker" {
  count = local.fargate ? 1 : 0

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this[0].name}/${aws_ecs_service.worker[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.worker_min_capacity
  max_capacity       = var.worker_max_capacity

  lifecycle {
    precondition {
      condition     = var.worker_max_capacity >= var.worker_min_capacity
      error_message = "worker_max_capacity must be at least worker_min_capacity."
    }
  }
}

# Backlog per task: visible messages divided by running worker tasks (from
# Container Insights), tracked towards var.worker_backlog_per_task.
resource "aws_appautoscaling_policy" "worker_backlog" {
  count = local.fargate ? 1 : 0

  name               = "${local.worker_service_name}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker[0].service_namespace
  resource_id        = aws_appautoscaling_target.worker[0].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.worker_backlog_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Visible messages"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.main.name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running worker tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this[0].name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker[0].name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "Visible messages per running worker task"
        expression  = "visible / tasks"
        return_data = true
      }
    }
  }
}
