output "region" {
  description = "AWS region of the deployment."
  value       = local.region
}

output "hosting" {
  description = "Where the binaries run: fargate or lambda."
  value       = var.hosting
}

output "architecture" {
  description = "CPU architecture of the ECS tasks and the Lambda functions (arm64 or x86_64)."
  value       = var.architecture
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "api_url" {
  description = "Base URL of the API (POST <api_url>/email). With a certificate, point a DNS name covered by it at alb_dns_name and use that name instead."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "bucket_name" {
  description = "Bucket the worker stores messages in."
  value       = aws_s3_bucket.emails.bucket
}

output "s3_key_prefix" {
  description = "Key prefix of the stored messages."
  value       = var.s3_key_prefix
}

output "s3_key_layout" {
  description = "Layout of the stored messages' keys below s3_key_prefix: time (<unix-seconds>-<id>.json) or hashed (<2 hex digits>/<unix-seconds>-<id>.json)."
  value       = var.s3_key_layout
}

output "s3_staging_prefix" {
  description = "Key prefix where the API stages emails too large for a queue message (the claim check); the worker removes each once stored."
  value       = var.s3_staging_prefix
}

output "queue_url" {
  description = "URL of the SQS queue."
  value       = aws_sqs_queue.main.url
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "token_parameter_name" {
  description = "SSM parameter holding the API token (read it with aws ssm get-parameter --with-decryption)."
  value       = aws_ssm_parameter.token.name
}

output "ecr_repository_url" {
  description = "URL of the ECR repository to push the image to."
  value       = aws_ecr_repository.app.repository_url
}

output "cluster_name" {
  description = "ECS cluster name (null with Lambda hosting)."
  value       = local.fargate ? aws_ecs_cluster.this[0].name : null
}

output "api_service_name" {
  description = "ECS service of the API (null with Lambda hosting)."
  value       = local.fargate ? aws_ecs_service.api[0].name : null
}

output "worker_service_name" {
  description = "ECS service of the worker (null with Lambda hosting)."
  value       = local.fargate ? aws_ecs_service.worker[0].name : null
}

output "api_task_definition_family" {
  description = "Task definition family of the API (null with Lambda hosting)."
  value       = local.fargate ? aws_ecs_task_definition.api[0].family : null
}

output "worker_task_definition_family" {
  description = "Task definition family of the worker (null with Lambda hosting)."
  value       = local.fargate ? aws_ecs_task_definition.worker[0].family : null
}

output "lambda_api_function_name" {
  description = "API function (null with Fargate hosting)."
  value       = local.lambda ? aws_lambda_function.api[0].function_name : null
}

output "lambda_worker_function_name" {
  description = "Worker function (null with Fargate hosting)."
  value       = local.lambda ? aws_lambda_function.worker[0].function_name : null
}

output "deploy_role_arn" {
  description = "Role the release and deploy jobs assume (environment github_deploy_environment; null without github_repository)."
  value       = local.github ? aws_iam_role.deploy[0].arn : null
}

output "terraform_role_arn" {
  description = "Role the Terraform workflow's apply job assumes (environment github_terraform_environment; null without github_repository)."
  value       = local.github ? aws_iam_role.terraform[0].arn : null
}

output "terraform_plan_role_arn" {
  description = "Role pull-request plans assume: plan without refresh, no data or secret reads (null without github_repository)."
  value       = local.github ? aws_iam_role.terraform_plan[0].arn : null
}

output "system_test_role_arn" {
  description = "Role the system test assumes (jobs of github_branch; null without github_repository)."
  value       = local.github ? aws_iam_role.system_test[0].arn : null
}

output "metrics_namespace" {
  description = "CloudWatch namespace of the binaries' metrics (METRICS_NAMESPACE), read by the dashboard and alarms."
  value       = var.metrics_namespace
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the pipeline: answers, accepted vs stored, queue, DLQ, tasks or concurrency, latencies, load balancer, alarms."
  value       = aws_cloudwatch_dashboard.main.dashboard_name
}

output "dashboard_url" {
  description = "Console URL of the dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.main.dashboard_name}"
}
