# Public Application Load Balancer in front of the API: the Fargate service
# (ip target group) or the API function (lambda target group).

resource "aws_lb" "this" {
  # checkov:skip=CKV_AWS_91: Access logs are optional (alb_access_logs_bucket); they need a bucket with the ELB log delivery policy.
  # checkov:skip=CKV_AWS_150: Deletion protection is the alb_deletion_protection variable, off by default so terraform destroy works.
  # checkov:skip=CKV2_AWS_28: No WAF by design: the API authenticates every request with its token; attach a web ACL if needed.
  name                       = var.name
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  desync_mitigation_mode     = "defensive"
  enable_deletion_protection = var.alb_deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]

    content {
      bucket  = access_logs.value
      prefix  = var.alb_access_logs_prefix
      enabled = true
    }
  }
}

resource "aws_lb_target_group" "api" {
  # checkov:skip=CKV_AWS_378: TLS terminates at the load balancer; traffic to the tasks stays inside the VPC.
  count = local.fargate ? 1 : 0

  name                 = "${var.name}-api"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = local.stop_timeout_seconds

  health_check {
    enabled             = true
    path                = local.health_check_path
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "lambda_api" {
  count = local.lambda ? 1 : 0

  name        = "${var.name}-api-fn"
  target_type = "lambda"

  health_check {
    enabled             = true
    path                = local.health_check_path
    matcher             = "200"
    interval            = 60
    timeout             = 30
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

locals {
  api_target_group_arn = local.fargate ? aws_lb_target_group.api[0].arn : aws_lb_target_group.lambda_api[0].arn
}

resource "aws_lb_listener" "http" {
  # checkov:skip=CKV_AWS_2: Port 80 serves HTTP only when no certificate_arn is given; with one it redirects to HTTPS.
  # checkov:skip=CKV_AWS_103: This listener carries no TLS; the HTTPS listener uses a TLS 1.2+ policy.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : local.api_target_group_arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []

      content {
        protocol    = "HTTPS"
        port        = "443"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.alb_ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = local.api_target_group_arn
  }
}
