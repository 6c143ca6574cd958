# The ALB accepts HTTP (and HTTPS when a certificate is given) from
# var.alb_ingress_cidrs; API tasks accept traffic only from the ALB on the app
# port; the worker accepts nothing. Tasks may only open HTTPS connections (to
# AWS APIs and ECR).

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Load balancer of ${var.name}"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  # checkov:skip=CKV_AWS_260: The load balancer is the public entry point of the API by design; port 80 redirects to HTTPS when certificate_arn is set.
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP from clients"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = local.https ? toset(var.alb_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  count = local.fargate ? 1 : 0

  security_group_id            = aws_security_group.alb.id
  description                  = "Forward to API tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.api[0].id
}

resource "aws_security_group" "api" {
  count = local.fargate ? 1 : 0

  name        = "${var.name}-api"
  description = "API tasks of ${var.name}"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-api" }
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  count = local.fargate ? 1 : 0

  security_group_id            = aws_security_group.api[0].id
  description                  = "App port from the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "api_https" {
  count = local.fargate ? 1 : 0

  security_group_id = aws_security_group.api[0].id
  description       = "HTTPS to AWS APIs (SQS, SSM) and ECR"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "worker" {
  count = local.fargate ? 1 : 0

  name        = "${var.name}-worker"
  description = "Worker tasks of ${var.name}; no inbound traffic"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-worker" }
}

resource "aws_vpc_security_group_egress_rule" "worker_https" {
  count = local.fargate ? 1 : 0

  security_group_id = aws_security_group.worker[0].id
  description       = "HTTPS to AWS APIs (SQS, S3) and ECR"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "endpoints" {
  count = local.private ? 1 : 0

  name        = "${var.name}-endpoints"
  description = "VPC interface endpoints of ${var.name}"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-endpoints" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_tasks" {
  for_each = local.private ? {
    api    = aws_security_group.api[0].id
    worker = aws_security_group.worker[0].id
  } : {}

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from ${each.key} tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value
}
