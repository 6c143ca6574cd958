# One CloudWatch dashboard for either hosting: the API's answers, the worker's
# progress, the queue, the latencies and the load balancer, with the alarms on
# top. Both runtimes publish the same metrics (CloudWatch Embedded Metric
# Format in their logs) under var.metrics_namespace with one dimension,
# Service = "api" (the API task or function) or "worker" (the worker task or
# function), so the same widgets serve Fargate and Lambda; the few that only
# make sense for one hosting say so in `hostings` and are left out otherwise.
#
# The widgets are a literal list in a local (rendered with jsonencode) so that
# tests/test_consistency.py can check every metric they name against what the
# code emits. Names come from locals, not from count-indexed resources, so the
# widgets of the other hosting can be written down without existing.

locals {
  both_hostings = ["fargate", "lambda"]

  api_target_group_arn_suffix = one(concat(aws_lb_target_group.api[*].arn_suffix, aws_lb_target_group.lambda_api[*].arn_suffix))

  alarm_arns = concat(
    [
      aws_cloudwatch_metric_alarm.dlq_not_empty.arn,
      aws_cloudwatch_metric_alarm.queue_age.arn,
      aws_cloudwatch_metric_alarm.api_unavailable.arn,
      aws_cloudwatch_metric_alarm.alb_5xx.arn,
      aws_cloudwatch_metric_alarm.store_failures.arn,
    ],
    aws_cloudwatch_metric_alarm.api_unhealthy_hosts[*].arn,
    [for a in aws_cloudwatch_metric_alarm.lambda_errors : a.arn],
    [for a in aws_cloudwatch_metric_alarm.lambda_throttles : a.arn],
  )

  dashboard_widgets = [
    {
      hostings = local.both_hostings
      widget = {
        type   = "text"
        width  = 24
        height = 2
        properties = {
          markdown = "## ${var.name} (${var.hosting})\nPOST /email → queue `${aws_sqs_queue.main.name}` → worker → bucket `${aws_s3_bucket.emails.bucket}`. Our metrics: namespace `${var.metrics_namespace}`, dimension `Service` (api, worker). What each alarm asks you to do is in its description and in the README (Operations, Metrics, dashboard and alarms)."
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "alarm"
        width  = 24
        height = 3
        properties = {
          title  = "Alarms"
          alarms = local.alarm_arns
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 12
        height = 6
        properties = {
          title   = "POST /email answers per minute, by class"
          region  = local.region
          view    = "timeSeries"
          stacked = true
          stat    = "Sum"
          period  = 60
          metrics = [
            [var.metrics_namespace, "EmailsAccepted", "Service", "api", { label = "200 accepted" }],
            [var.metrics_namespace, "RejectedInvalid", "Service", "api", { label = "400 invalid" }],
            [var.metrics_namespace, "RejectedUnauthorized", "Service", "api", { label = "401 unauthorized" }],
            [var.metrics_namespace, "RejectedTimeout", "Service", "api", { label = "408 timeout" }],
            [var.metrics_namespace, "RejectedTooLarge", "Service", "api", { label = "413 too large" }],
            [var.metrics_namespace, "RejectedMediaType", "Service", "api", { label = "415 media type" }],
            [var.metrics_namespace, "UnavailableQueue", "Service", "api", { label = "503 queue" }],
            [var.metrics_namespace, "UnavailableTokenStore", "Service", "api", { label = "503 token store" }],
            [var.metrics_namespace, "UnavailableOverloaded", "Service", "api", { label = "503 overloaded" }],
            [var.metrics_namespace, "UnavailableDeadline", "Service", "api", { label = "503 deadline" }],
            [var.metrics_namespace, "UnavailableBucket", "Service", "api", { label = "503 bucket (staging)" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 12
        height = 6
        properties = {
          title   = "Accepted vs stored per minute"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Sum"
          period  = 60
          metrics = [
            [var.metrics_namespace, "EmailsAccepted", "Service", "api", { label = "accepted (API)" }],
            [var.metrics_namespace, "EmailsStored", "Service", "worker", { label = "stored (worker, new objects)" }],
            [var.metrics_namespace, "EmailsAlreadyStored", "Service", "worker", { label = "already stored (redeliveries)" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Queue: messages waiting and in flight"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 60
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.main.name, { label = "waiting (visible)" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", aws_sqs_queue.main.name, { label = "in flight (not visible)" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Queue: age of the oldest message (s)"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 60
          metrics = [
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.main.name, { label = "oldest message" }],
          ]
          annotations = {
            horizontal = [{ label = "${var.name}-queue-age alarm", value = var.alarm_queue_age_seconds }]
          }
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Dead-letter queue: messages (run queue2bucket redrive)"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 60
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { label = "in the DLQ" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 12
        height = 6
        properties = {
          title   = "Worker: messages per minute, by outcome"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Sum"
          period  = 60
          metrics = [
            [var.metrics_namespace, "MessagesReceived", "Service", "worker", { label = "received" }],
            [var.metrics_namespace, "EmailsStored", "Service", "worker", { label = "stored" }],
            [var.metrics_namespace, "EmailsAlreadyStored", "Service", "worker", { label = "already stored" }],
            [var.metrics_namespace, "StoreFailures", "Service", "worker", { label = "store failures (retried)" }],
            [var.metrics_namespace, "StoreFailuresThrottled", "Service", "worker", { label = "of them throttled (SlowDown)" }],
            [var.metrics_namespace, "StoreFailuresDenied", "Service", "worker", { label = "of them denied (AccessDenied, KMS)" }],
            [var.metrics_namespace, "MessagesUnstorable", "Service", "worker", { label = "unstorable (left for the DLQ)" }],
            [var.metrics_namespace, "MessagesHandedBack", "Service", "worker", { label = "handed back after 5 min" }],
          ]
        }
      }
    },
    {
      hostings = ["fargate"]
      widget = {
        type   = "metric"
        width  = 12
        height = 6
        properties = {
          title   = "Running tasks"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Average"
          period  = 60
          metrics = [
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.name, "ServiceName", local.api_service_name, { label = "api" }],
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.name, "ServiceName", local.worker_service_name, { label = "worker" }],
          ]
        }
      }
    },
    {
      hostings = ["lambda"]
      widget = {
        type   = "metric"
        width  = 12
        height = 6
        properties = {
          title   = "Concurrent executions"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 60
          metrics = [
            ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", local.lambda_api_name, { label = "api" }],
            ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", local.lambda_worker_name, { label = "worker" }],
          ]
          annotations = {
            horizontal = [{ label = "lambda_worker_max_concurrency", value = var.lambda_worker_max_concurrency }]
          }
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "API latency, POST /email (ms)"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = [
            [var.metrics_namespace, "ApiLatency", "Service", "api", { stat = "p50", label = "p50" }],
            [var.metrics_namespace, "ApiLatency", "Service", "api", { stat = "p99", label = "p99" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Accepted → stored (ms)"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = [
            [var.metrics_namespace, "EndToEndLatency", "Service", "worker", { stat = "p50", label = "p50" }],
            [var.metrics_namespace, "EndToEndLatency", "Service", "worker", { stat = "p99", label = "p99" }],
            [var.metrics_namespace, "WorkerBatchTime", "Service", "worker", { stat = "p99", label = "worker batch time p99" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "API calls to SQS and SSM per minute"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = [
            [var.metrics_namespace, "SqsSendCalls", "Service", "api", { stat = "Sum", label = "SendMessage(Batch) calls" }],
            [var.metrics_namespace, "SqsBatchSize", "Service", "api", { stat = "Average", label = "messages per call (right)", yAxis = "right" }],
            [var.metrics_namespace, "TokenReads", "Service", "api", { stat = "Sum", label = "token reads (SSM)" }],
            [var.metrics_namespace, "TokenReadFailures", "Service", "api", { stat = "Sum", label = "token read failures" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Load balancer: 5xx per minute"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Sum"
          period  = 60
          metrics = [
            ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", aws_lb.this.arn_suffix, { label = "ELB 5xx (no target, target failed, timeout)" }],
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", aws_lb.this.arn_suffix, { label = "target 5xx (the API's own)" }],
            ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", aws_lb.this.arn_suffix, { label = "requests (right)", yAxis = "right" }],
          ]
        }
      }
    },
    {
      hostings = local.both_hostings
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Load balancer: target response time (s)"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = [
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "p50", label = "p50" }],
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "p99", label = "p99" }],
          ]
        }
      }
    },
    {
      hostings = ["fargate"]
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Load balancer: API targets"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 60
          metrics = [
            ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", local.api_target_group_arn_suffix, "LoadBalancer", aws_lb.this.arn_suffix, { label = "healthy" }],
            ["AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup", local.api_target_group_arn_suffix, "LoadBalancer", aws_lb.this.arn_suffix, { label = "unhealthy" }],
          ]
        }
      }
    },
    {
      hostings = ["lambda"]
      widget = {
        type   = "metric"
        width  = 8
        height = 6
        properties = {
          title   = "Lambda: errors and throttles per minute"
          region  = local.region
          view    = "timeSeries"
          stacked = false
          stat    = "Sum"
          period  = 60
          metrics = [
            ["AWS/Lambda", "Errors", "FunctionName", local.lambda_api_name, { label = "api errors" }],
            ["AWS/Lambda", "Throttles", "FunctionName", local.lambda_api_name, { label = "api throttles" }],
            ["AWS/Lambda", "Errors", "FunctionName", local.lambda_worker_name, { label = "worker errors" }],
            ["AWS/Lambda", "Throttles", "FunctionName", local.lambda_worker_name, { label = "worker throttles" }],
          ]
        }
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [for w in local.dashboard_widgets : w.widget if contains(w.hostings, var.hosting)]
  })
}
