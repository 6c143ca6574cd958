# Alarms an on-call engineer can act on. Each alarm_description is the runbook
# line: what the alarm means, what to look at, what to do (the README's
# Operations section lists them all). Every alarm notifies the same ARNs, the
# alarm_actions variable, when it fires and when it clears.
#
# The metrics in our namespace (var.metrics_namespace, Service dimension) are
# the ones the binaries publish as CloudWatch Embedded Metric Format in their
# logs; tests/test_consistency.py checks every metric name and Service value
# used here against what `queue2bucket manifest` says the code emits.
#
# treat_missing_data is chosen per alarm: our counters publish nothing while
# no task or invocation runs, the Lambda and load balancer counts nothing
# while nothing happens, and SQS nothing for a queue that has been empty and
# unused for hours, so missing data means "nothing to report" (notBreaching)
# for every alarm here.

locals {
  # A rate alarm waits for this many answers in its 5-minute period, so that
  # one failed request among two at night does not page anyone.
  alarm_min_answers = 20

  alarm_queue_retention_hours = floor(var.message_retention_seconds / 3600)

  # CloudWatch's limit on alarm descriptions; each alarm checks its own.
  alarm_description_max = 1024
}

# Anything in the DLQ needs a look: the worker gave up on it.
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "Messages in ${aws_sqs_queue.dlq.name}: the worker failed to store them ${var.max_receive_count} times. Fix the cause (worker logs: outcome of each message), then list them with `queue2bucket redrive --dry-run` and move them back with `queue2bucket redrive` (SQS_QUEUE_URL=${aws_sqs_queue.main.url}); unstorable messages return to the dead-letter queue."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # an unused, empty DLQ publishes nothing
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# The worker is down or not keeping up: emails wait on the queue.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name = "${var.name}-queue-age"
  alarm_description = join(" ", [
    "The oldest email in ${aws_sqs_queue.main.name} has waited over ${var.alarm_queue_age_seconds} s for 3 minutes: the worker is down or not keeping up. Nothing is lost yet (the queue keeps messages ${local.alarm_queue_retention_hours} h).",
    local.lambda
    ? "Dashboard: worker concurrency (at lambda_worker_max_concurrency, ${var.lambda_worker_max_concurrency}? raise it), Lambda errors and throttles, store failures. Event source mapping disabled? aws lambda list-event-source-mappings --function-name ${local.lambda_worker_name}."
    : "Dashboard: worker tasks (at worker_max_capacity, ${var.worker_max_capacity}? raise it or worker_cpu), accepted vs stored, store failures. No task running? ECS events of ${local.worker_service_name} and its stopped tasks (a start-up error names the setting).",
    "Store failures: see ${var.name}-store-failures. Clears by itself once the backlog drains.",
  ])
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.alarm_queue_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # SQS reports on a queue that holds messages; silence means empty and idle
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# POST /email answered 503: the API could not queue, stage or check.
resource "aws_cloudwatch_metric_alarm" "api_unavailable" {
  alarm_name          = "${var.name}-api-unavailable"
  alarm_description   = "Over ${var.alarm_api_unavailable_percent} % of POST /email (accepted or 503) got 503 in 5 minutes; clients retry. The dashboard's answers widget names the cause: UnavailableQueue (SQS failing or slow: api logs, AWS Health), UnavailableTokenStore (SSM or KMS failing, throttled or denied: api logs), UnavailableOverloaded (over MAX_CONCURRENT_REQUESTS requests or MAX_BYTES_IN_FLIGHT bytes of bodies in progress: scale out, api_max_capacity or api_cpu), UnavailableDeadline (Lambda deadline first: raise lambda_api_timeout), UnavailableBucket (staging a large email in S3 failed: api logs; AccessDenied means s3:PutObject below ${var.s3_staging_prefix} in the API's role). Only periods with ${local.alarm_min_answers} answers or more count. Clears by itself."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_api_unavailable_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching" # no traffic, no answers, nothing to report
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "unavailable_percent"
    label       = "POST /email answered 503 (%)"
    expression  = "IF(answered >= ${local.alarm_min_answers}, 100 * unavailable / answered, 0)"
    return_data = true
  }

  metric_query {
    id          = "answered"
    expression  = "FILL(accepted, 0) + unavailable"
    return_data = false
  }

  metric_query {
    id          = "unavailable"
    expression  = "FILL(u_queue, 0) + FILL(u_token, 0) + FILL(u_overload, 0) + FILL(u_deadline, 0) + FILL(u_bucket, 0)"
    return_data = false
  }

  metric_query {
    id          = "accepted"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "EmailsAccepted"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "u_queue"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "UnavailableQueue"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "u_token"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "UnavailableTokenStore"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "u_overload"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "UnavailableOverloaded"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "u_deadline"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "UnavailableDeadline"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "u_bucket"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "UnavailableBucket"
      dimensions  = { Service = "api" }
      stat        = "Sum"
      period      = 300
    }
  }

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# 5xx at the load balancer: its own (no target, target failed or timed out)
# and the API's (mostly its 503s, which the alarm above explains).
resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${var.name}-alb-5xx"
  alarm_description   = "Over ${var.alarm_alb_5xx_percent} % of requests to load balancer ${aws_lb.this.name} got a 5xx in 5 minutes. Dashboard: ELB 5xx (the load balancer's own: 502 a target closed the connection or the function failed, 503 no healthy target, 504 timeout) or target 5xx (the API's, mostly 503: see ${var.name}-api-unavailable). ELB 502/503/504: ${local.lambda ? "the ${var.name}-lambda-api-errors and -throttles alarms, and the function's log group" : "API tasks crashing or restarting (ECS events of ${local.api_service_name}, stopped tasks, api logs), ${var.name}-api-unhealthy-hosts"}. Only periods with ${local.alarm_min_answers} requests or more count."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_alb_5xx_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching" # no traffic, nothing to report
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "errors_percent"
    label       = "Requests answered 5xx (%)"
    expression  = "IF(requests >= ${local.alarm_min_answers}, 100 * (FILL(elb_5xx, 0) + FILL(target_5xx, 0)) / requests, 0)"
    return_data = true
  }

  # RequestCount leaves out requests the load balancer refused before
  # choosing a target (its 503 when no target is healthy): add them back.
  metric_query {
    id          = "requests"
    expression  = "FILL(routed, 0) + FILL(elb_5xx, 0)"
    return_data = false
  }

  metric_query {
    id          = "routed"
    return_data = false

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "elb_5xx"
    return_data = false

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "target_5xx"
    return_data = false

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# An API task fails the load balancer's health check.
resource "aws_cloudwatch_metric_alarm" "api_unhealthy_hosts" {
  count = local.fargate ? 1 : 0

  alarm_name          = "${var.name}-api-unhealthy-hosts"
  alarm_description   = "An API task in target group ${aws_lb_target_group.api[0].name} has failed the health check (GET ${local.health_check_path} on port ${var.container_port}) for 3 minutes; ECS replaces such tasks. If it goes on: ECS events of ${local.api_service_name} and the stopped tasks' reasons (OutOfMemory: raise api_memory; container exited: api logs, a start-up error names the setting), then the security groups between the load balancer and the tasks."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix, TargetGroup = aws_lb_target_group.api[0].arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no registered target, no count (the 5xx alarm covers an API with no task)
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# The worker cannot write to the bucket.
resource "aws_cloudwatch_metric_alarm" "store_failures" {
  alarm_name          = "${var.name}-store-failures"
  alarm_description   = "Storing emails in ${aws_s3_bucket.emails.bucket} failed over ${var.alarm_store_failures} times in 5 minutes. The emails stay on the queue and are retried; after ${var.max_receive_count} receives they go to the dead-letter queue (queue2bucket redrive once fixed). The dashboard's worker widget splits them, the worker logs name each error: StoreFailuresDenied, AccessDenied (in the worker's role s3:PutObject below ${var.s3_key_prefix}, s3:GetObject below ${var.s3_staging_prefix} for large emails; the bucket and KMS key policies), StoreFailuresThrottled, SlowDown (over about 3,500 PUT/s on one prefix: README, Capacity and cost), 5xx or timeouts (AWS Health for S3). Clears by itself once stores succeed."
  namespace           = var.metrics_namespace
  metric_name         = "StoreFailures"
  dimensions          = { Service = "worker" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.alarm_store_failures
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no failure, no count
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

# Lambda hosting: the functions fail or are throttled.
locals {
  lambda_alarms = local.lambda ? {
    api = {
      function  = local.lambda_api_name
      errors    = "each failed invocation was a 502 from the load balancer. Timeouts: raise lambda_api_timeout"
      throttles = "the load balancer answered 503 to those clients"
    }
    worker = {
      function  = local.lambda_worker_name
      errors    = "each failed invocation returns its whole batch to the queue, one of ${var.max_receive_count} receives used. Timeouts: raise lambda_worker_timeout"
      throttles = "the event source mapping backs off and the emails wait on the queue (see ${var.name}-queue-age)"
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = local.lambda_alarms

  alarm_name          = "${var.name}-lambda-${each.key}-errors"
  alarm_description   = "The function ${each.value.function} failed (crashed, timed out or failed its init) in the last 5 minutes: ${each.value.errors}. Its log group /aws/lambda/${each.value.function} has the error; an init failure names the missing or bad setting. Right after a deploy: deploy the previous commit (deploy.yml with its SHA)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value.function }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no invocation, no count
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  for_each = local.lambda_alarms

  alarm_name          = "${var.name}-lambda-${each.key}-throttles"
  alarm_description   = "Invocations of ${each.value.function} were throttled in the last 5 minutes: ${each.value.throttles}. The account's concurrency in ${local.region} is used up (ConcurrentExecutions on the dashboard, all functions of the account count). Ask for a higher Lambda concurrent executions quota, or find the function that took it; see the README, Capacity and cost."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value.function }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no invocation, no count
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  lifecycle {
    postcondition {
      condition     = length(self.alarm_description) <= local.alarm_description_max
      error_message = "The runbook line of ${self.alarm_name} is ${length(self.alarm_description)} characters; CloudWatch takes at most ${local.alarm_description_max}."
    }
  }
}
