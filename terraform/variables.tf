# ---------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-2"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-2."
  }
}

variable "name" {
  description = "Name prefix for every resource (ECR repository, ECS cluster, services, functions, roles, ...)."
  type        = string
  default     = "queue2bucket"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (it is used in bucket, load balancer and target group names)."
  }
}

variable "hosting" {
  description = "Where the binaries run: \"fargate\" (two ECS services behind the ALB) or \"lambda\" (two Lambda functions, the API behind the ALB)."
  type        = string
  default     = "fargate"

  validation {
    condition     = contains(["fargate", "lambda"], var.hosting)
    error_message = "hosting must be \"fargate\" or \"lambda\"."
  }
}

variable "architecture" {
  description = "CPU architecture of both hostings: \"arm64\" (AWS Graviton, the default: about 20 % cheaper per vCPU-hour on Fargate and per GB-second on Lambda) or \"x86_64\". Sets the ECS task definitions' runtime_platform (ARM64 or X86_64; the image is one index for linux/arm64 and linux/amd64, so ECS pulls the matching one) and, when Terraform creates them, the Lambda functions' architectures and the zips they are created from (target/lambda/<architecture>/); afterwards the deploy sets a function's architecture together with its code (scripts/deploy.sh lambda target/lambda/<architecture>)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC. Subnets are /24 blocks carved out of it, so use a /16 to /20."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block between /16 and /20."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread the subnets (and tasks) over when availability_zones is empty."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4 && floor(var.az_count) == var.az_count
    error_message = "az_count must be an integer from 2 to 4 (an ALB needs at least two zones)."
  }
}

variable "availability_zones" {
  description = "Availability zones to use, for example [\"us-east-2a\", \"us-east-2b\"]. Empty takes the first az_count available zones of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4 && length(distinct(var.availability_zones)) == length(var.availability_zones))
    error_message = "availability_zones must be empty or list 2 to 4 distinct zones."
  }
}

variable "private_networking" {
  description = "Run the Fargate tasks in private subnets without public IPs and reach AWS services through VPC endpoints (SQS, S3, SSM, ECR, CloudWatch Logs). Costs one interface endpoint per service and zone; the default (false) runs tasks in public subnets with public IPs, which avoids NAT and endpoint costs."
  type        = bool
  default     = false
}

variable "enable_vpc_flow_logs" {
  description = "Send VPC flow logs (rejected and accepted traffic) to a CloudWatch log group."
  type        = bool
  default     = true
}

variable "alb_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer on ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be a non-empty list of valid IPv4 CIDR blocks."
  }
}

# ---------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ARN of an ACM certificate for the HTTPS listener. When set, the ALB serves HTTPS on 443 and port 80 redirects to it; when null, the ALB serves plain HTTP on port 80."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be null or an ACM certificate ARN."
  }
}

variable "alb_ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "alb_access_logs_bucket" {
  description = "Name of an existing S3 bucket (with the ELB log delivery bucket policy) to receive ALB access logs. Null disables access logs."
  type        = string
  default     = null
}

variable "alb_access_logs_prefix" {
  description = "Key prefix for ALB access logs in alb_access_logs_bucket."
  type        = string
  default     = "alb"
}

variable "alb_deletion_protection" {
  description = "Enable deletion protection on the ALB (terraform destroy then fails until it is turned off)."
  type        = bool
  default     = false
}

variable "alb_idle_timeout" {
  description = "Idle timeout of the ALB in seconds: how long it keeps an idle connection to a target for reuse."
  type        = number
  default     = 60

  validation {
    condition     = var.alb_idle_timeout >= 1 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be between 1 and 4000 seconds."
  }
}

variable "api_keep_alive_timeout" {
  description = "Seconds the API keeps an idle keep-alive connection open (its KEEP_ALIVE_TIMEOUT). It must exceed alb_idle_timeout: a target that closes an idle connection first makes the ALB answer 502 to the request it was sending on it."
  type        = number
  default     = 75

  validation {
    condition     = var.api_keep_alive_timeout > var.alb_idle_timeout && var.api_keep_alive_timeout <= 4000
    error_message = "api_keep_alive_timeout must exceed alb_idle_timeout (and be at most 4000 seconds)."
  }
}

# ---------------------------------------------------------------------------
# Container image and Fargate tasks
# ---------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of an image in the ECR repository (a full commit SHA) that the task definition templates name, and so what the ECS services run when Terraform creates them. Afterwards the deploy workflow owns the running image and Terraform ignores it. Null (the default) names no image (the tag \"undeployed\"): services created before the first deploy try to start their tasks, which fail to pull it, until the deployment circuit breaker stops them; the first deploy registers the real image. Tags are immutable, so \"latest\" is not accepted."
  type        = string
  default     = null

  validation {
    condition     = var.image_tag == null || try(can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && !contains(["latest", "undeployed"], var.image_tag), false)
    error_message = "image_tag must be a valid Docker tag (up to 128 characters of letters, digits, '_', '.', '-') other than \"latest\" and \"undeployed\"."
  }
}

variable "container_port" {
  description = "Port the API container listens on (passed to it as PORT)."
  type        = number
  default     = 8000

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port must be an unprivileged port (1024-65535): the container runs as a non-root user."
  }
}

variable "container_user" {
  description = "User (uid:gid) the containers run as; must not be root."
  type        = string
  default     = "65532:65532"

  validation {
    condition     = can(regex("^[1-9][0-9]*(:[1-9][0-9]*)?$", var.container_user))
    error_message = "container_user must be a numeric, non-zero uid or uid:gid."
  }
}

variable "api_cpu" {
  description = "CPU units of an API task (256 = 0.25 vCPU); its RUNTIME_THREADS is the whole vCPUs, at least 1."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.api_cpu)
    error_message = "api_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "api_memory" {
  description = "Memory of an API task in MiB; must be a valid Fargate combination with api_cpu."
  type        = number
  default     = 512

  validation {
    condition     = var.api_memory >= 512 && var.api_memory <= 30720
    error_message = "api_memory must be between 512 and 30720 MiB."
  }
}

variable "worker_cpu" {
  description = "CPU units of a worker task (256 = 0.25 vCPU); its RUNTIME_THREADS is the whole vCPUs, at least 1."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.worker_cpu)
    error_message = "worker_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "worker_memory" {
  description = "Memory of a worker task in MiB; must be a valid Fargate combination with worker_cpu."
  type        = number
  default     = 512

  validation {
    condition     = var.worker_memory >= 512 && var.worker_memory <= 30720
    error_message = "worker_memory must be between 512 and 30720 MiB."
  }
}

variable "worker_poll_interval" {
  description = "POLL_INTERVAL passed to the worker: seconds one ReceiveMessage call waits for messages (SQS long polling)."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_poll_interval >= 1 && var.worker_poll_interval <= 20 && floor(var.worker_poll_interval) == var.worker_poll_interval
    error_message = "worker_poll_interval must be an integer from 1 to 20 (the SQS long-polling limit)."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (tasks, functions, flow logs) in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

# ---------------------------------------------------------------------------
# Autoscaling
# ---------------------------------------------------------------------------

variable "api_min_capacity" {
  description = "Minimum number of API tasks (also the initial desired count)."
  type        = number
  default     = 2

  validation {
    condition     = var.api_min_capacity >= 1
    error_message = "api_min_capacity must be at least 1."
  }
}

variable "api_max_capacity" {
  description = "Maximum number of API tasks."
  type        = number
  default     = 10

  validation {
    condition     = var.api_max_capacity >= 1 && var.api_max_capacity <= 100
    error_message = "api_max_capacity must be between 1 and 100."
  }
}

variable "api_requests_per_target" {
  description = "Target of the API scaling policy: ALB requests per minute per API task (ALBRequestCountPerTarget)."
  type        = number
  default     = 1000

  validation {
    condition     = var.api_requests_per_target > 0
    error_message = "api_requests_per_target must be positive."
  }
}

variable "worker_min_capacity" {
  description = "Minimum number of worker tasks (also the initial desired count)."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_capacity >= 1
    error_message = "worker_min_capacity must be at least 1 (the backlog-per-task metric needs a running task)."
  }
}

variable "worker_max_capacity" {
  description = "Maximum number of worker tasks."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_max_capacity >= 1 && var.worker_max_capacity <= 100
    error_message = "worker_max_capacity must be between 1 and 100."
  }
}

variable "worker_backlog_per_task" {
  description = "Target of the worker scaling policy: visible queue messages per running worker task."
  type        = number
  default     = 100

  validation {
    condition     = var.worker_backlog_per_task > 0
    error_message = "worker_backlog_per_task must be positive."
  }
}

# ---------------------------------------------------------------------------
# Queue, bucket, token
# ---------------------------------------------------------------------------

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the queue. Null computes it: 60 s for Fargate, and at least six times lambda_worker_timeout for Lambda (as AWS recommends for SQS event sources)."
  type        = number
  default     = null

  validation {
    condition     = var.queue_visibility_timeout_seconds == null || try(var.queue_visibility_timeout_seconds >= 30 && var.queue_visibility_timeout_seconds <= 43200, false)
    error_message = "queue_visibility_timeout_seconds must be null or between 30 (the ECS stop timeout) and 43200."
  }
}

variable "message_retention_seconds" {
  description = "Message retention of the main queue. The dead-letter queue keeps messages for the maximum (14 days), which must not be shorter."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "max_receive_count" {
  description = "Receives after which a message moves to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be an integer from 1 to 1000."
  }
}

variable "s3_key_prefix" {
  description = "Key prefix under which the worker stores messages (S3_KEY_PREFIX); the worker may write only below it."
  type        = string
  default     = "emails/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", var.s3_key_prefix))
    error_message = "s3_key_prefix must be a relative key prefix ending with '/', such as \"emails/\"."
  }
}

variable "s3_key_layout" {
  description = "How the worker lays keys out below s3_key_prefix (S3_KEY_LAYOUT): \"time\" (the default, <prefix><unix-seconds>-<id>.json, one time order, the original's shape) or \"hashed\" (<prefix><2 hex digits>/<unix-seconds>-<id>.json, writes spread over 256 prefixes, for sustained rates from about 2,000 emails/s). Change it only with the workers stopped and no message in flight."
  type        = string
  default     = "time"

  validation {
    condition     = contains(["time", "hashed"], var.s3_key_layout)
    error_message = "s3_key_layout must be \"time\" or \"hashed\"."
  }
}

variable "s3_staging_prefix" {
  description = "Key prefix under which the API stages emails too large for a queue message (S3_STAGING_PREFIX, the claim check); the worker reads them there and removes each once it is stored. The API may write only below it, the worker read and delete only below it. Must not overlap s3_key_prefix."
  type        = string
  default     = "staging/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", var.s3_staging_prefix))
    error_message = "s3_staging_prefix must be a relative key prefix ending with '/', such as \"staging/\"."
  }

  # The binaries refuse to start with overlapping prefixes; so does the plan.
  validation {
    condition     = !startswith(var.s3_staging_prefix, var.s3_key_prefix) && !startswith(var.s3_key_prefix, var.s3_staging_prefix)
    error_message = "s3_staging_prefix and s3_key_prefix must not overlap (neither may start with the other): the lifecycle rule that expires staged emails would delete stored ones, and the API, which may write below the staging prefix, could write where stored emails live."
  }
}

variable "s3_staging_expiration_days" {
  description = "Days after which the lifecycle rule on s3_staging_prefix removes a staged email the worker has not removed (one whose message never made it to the queue, or whose removal failed). Must exceed the longest a pointer message can live, message_retention_seconds plus the dead-letter queue's 14 days (at most 28 days), since a worker that finds a staged email gone takes it as stored."
  type        = number
  default     = 30

  validation {
    condition     = var.s3_staging_expiration_days >= 1 && floor(var.s3_staging_expiration_days) == var.s3_staging_expiration_days
    error_message = "s3_staging_expiration_days must be a whole number of days, at least 1."
  }

  # See s3.tf: an earlier expiry could remove a staged email whose pointer
  # is still queued, and the worker would take that email as stored.
  validation {
    condition     = var.s3_staging_expiration_days * 86400 > var.message_retention_seconds + local.dlq_retention_seconds
    error_message = "s3_staging_expiration_days must exceed the longest a pointer message can live, message_retention_seconds plus the dead-letter queue's retention (${var.message_retention_seconds} + ${local.dlq_retention_seconds} s = ${(var.message_retention_seconds + local.dlq_retention_seconds) / 86400} days): a worker that finds a pointer's staged email gone takes it as stored, so the email would be lost."
  }
}

variable "s3_force_destroy" {
  description = "Allow terraform destroy to delete the bucket together with every stored message."
  type        = bool
  default     = false
}

variable "s3_noncurrent_version_retention_days" {
  description = "Days after which overwritten or deleted object versions are removed from the bucket."
  type        = number
  default     = 90

  validation {
    condition     = var.s3_noncurrent_version_retention_days >= 1
    error_message = "s3_noncurrent_version_retention_days must be at least 1."
  }
}

variable "ecr_force_delete" {
  description = "Allow terraform destroy to delete the ECR repository even if it contains images."
  type        = bool
  default     = false
}

variable "ecr_keep_images" {
  description = "Number of most recent images the ECR lifecycle policy keeps."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 5
    error_message = "ecr_keep_images must be at least 5 so that rollbacks stay possible."
  }
}

variable "token_parameter_name" {
  description = "Name of the SSM SecureString parameter holding the API token. Null means /<name>/api-token."
  type        = string
  default     = null

  validation {
    condition     = var.token_parameter_name == null || can(regex("^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.token_parameter_name))
    error_message = "token_parameter_name must be a hierarchical parameter name starting with '/'."
  }
}

variable "api_token" {
  description = "Token to write into the parameter when it is created or api_token_version changes. Null generates a random 48-character token. Ephemeral: never stored in the state or a plan."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.api_token == null || try(length(var.api_token) >= 16, false)
    error_message = "api_token must be null or at least 16 characters long."
  }
}

variable "api_token_version" {
  description = "Version of the token Terraform writes. Terraform writes the parameter's value (api_token, or a new random token) only when the parameter is created or this number changes; raise it to rotate the token through Terraform. Rotations made outside Terraform are kept."
  type        = number
  default     = 1

  validation {
    condition     = var.api_token_version >= 1 && floor(var.api_token_version) == var.api_token_version
    error_message = "api_token_version must be a positive integer."
  }
}

# ---------------------------------------------------------------------------
# Metrics, dashboard and alarms
# ---------------------------------------------------------------------------

variable "metrics_namespace" {
  description = "CloudWatch namespace the binaries publish their metrics to (METRICS_NAMESPACE, set on both containers and both functions) and that the dashboard and alarms read."
  type        = string
  default     = "Queue2Bucket"

  validation {
    condition     = can(regex("^[0-9A-Za-z._/#: -]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 letters, digits and . - _ / # : or spaces, and must not start with \"AWS/\" (reserved for AWS services)."
  }
}

variable "alarm_actions" {
  description = "ARNs (for example an SNS topic) notified when any alarm goes into ALARM and when it returns to OK. Empty: the alarms only show in the console and on the dashboard."
  type        = list(string)
  default     = []
}

variable "alarm_queue_age_seconds" {
  description = "Age in seconds of the oldest message in the queue above which the <name>-queue-age alarm fires (three minutes in a row): the worker is down or not keeping up."
  type        = number
  default     = 600

  validation {
    condition     = var.alarm_queue_age_seconds >= 60
    error_message = "alarm_queue_age_seconds must be at least 60 (SQS reports the age once a minute)."
  }
}

variable "alarm_api_unavailable_percent" {
  description = "Share (percent) of POST /email answered 503 (queue, token store, overload or deadline), of those accepted or answered 503, over 5 minutes, above which the <name>-api-unavailable alarm fires."
  type        = number
  default     = 1

  validation {
    condition     = var.alarm_api_unavailable_percent > 0 && var.alarm_api_unavailable_percent <= 100
    error_message = "alarm_api_unavailable_percent must be above 0 and at most 100."
  }
}

variable "alarm_alb_5xx_percent" {
  description = "Share (percent) of requests to the load balancer answered 5xx (by the load balancer itself or by the API), over 5 minutes, above which the <name>-alb-5xx alarm fires."
  type        = number
  default     = 1

  validation {
    condition     = var.alarm_alb_5xx_percent > 0 && var.alarm_alb_5xx_percent <= 100
    error_message = "alarm_alb_5xx_percent must be above 0 and at most 100."
  }
}

variable "alarm_store_failures" {
  description = "Failed attempts to store an email in the bucket (each retried) in 5 minutes above which the <name>-store-failures alarm fires."
  type        = number
  default     = 10

  validation {
    condition     = var.alarm_store_failures >= 0
    error_message = "alarm_store_failures must not be negative."
  }
}

# ---------------------------------------------------------------------------
# Lambda hosting
# ---------------------------------------------------------------------------

variable "lambda_api_zip" {
  description = "Path (relative to the working directory) of the zip the API function is created from. Null: the one of its architecture, ../target/lambda/<architecture>/queue2bucket-api/bootstrap.zip, as scripts/lambda-arm64.sh builds it. Ignored when lambda_s3_bucket is set. Only read when hosting = \"lambda\" and the function does not exist yet."
  type        = string
  default     = null
}

variable "lambda_worker_zip" {
  description = "Path (relative to the working directory) of the zip the worker function is created from. Null: ../target/lambda/<architecture>/queue2bucket-worker/bootstrap.zip. Ignored when lambda_s3_bucket is set. Only read when hosting = \"lambda\" and the function does not exist yet."
  type        = string
  default     = null
}

variable "lambda_s3_bucket" {
  description = "S3 bucket holding the function zips; when set, lambda_api_s3_key and lambda_worker_s3_key are used instead of the local zip files."
  type        = string
  default     = null
}

variable "lambda_api_s3_key" {
  description = "S3 key of the API function's zip in lambda_s3_bucket. Null: <architecture>/queue2bucket-api/bootstrap.zip (target/lambda/ as scripts/lambda-arm64.sh lays it out)."
  type        = string
  default     = null
}

variable "lambda_worker_s3_key" {
  description = "S3 key of the worker function's zip in lambda_s3_bucket. Null: <architecture>/queue2bucket-worker/bootstrap.zip."
  type        = string
  default     = null
}

variable "lambda_api_memory" {
  description = "Memory of the API function in MB; its RUNTIME_THREADS is one per 1,769 MB (a vCPU), at least 1."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_api_memory >= 128 && var.lambda_api_memory <= 10240
    error_message = "lambda_api_memory must be between 128 and 10240 MB."
  }
}

variable "lambda_api_timeout" {
  description = "Timeout of the API function in seconds, above the 5 s limit of one SQS or SSM call."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_api_timeout >= 1 && var.lambda_api_timeout <= 900
    error_message = "lambda_api_timeout must be between 1 and 900 seconds."
  }
}

variable "lambda_worker_memory" {
  description = "Memory of the worker function in MB; its RUNTIME_THREADS is one per 1,769 MB (a vCPU), at least 1."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_worker_memory >= 128 && var.lambda_worker_memory <= 10240
    error_message = "lambda_worker_memory must be between 128 and 10240 MB."
  }
}

variable "lambda_worker_timeout" {
  description = "Timeout of the worker function in seconds, above the 30 s limit of one S3 call; the queue's visibility timeout is at least six times this."
  type        = number
  default     = 60

  validation {
    condition     = var.lambda_worker_timeout >= 1 && var.lambda_worker_timeout <= 900
    error_message = "lambda_worker_timeout must be between 1 and 900 seconds."
  }
}

variable "lambda_worker_batch_size" {
  description = "Maximum number of messages per worker invocation."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_worker_batch_size >= 1 && var.lambda_worker_batch_size <= 10
    error_message = "lambda_worker_batch_size must be between 1 and 10 (larger batches need a batching window)."
  }
}

variable "lambda_worker_max_concurrency" {
  description = "Maximum concurrent worker invocations the SQS event source mapping starts."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_worker_max_concurrency >= 2 && var.lambda_worker_max_concurrency <= 1000
    error_message = "lambda_worker_max_concurrency must be between 2 and 1000."
  }
}

# ---------------------------------------------------------------------------
# GitHub Actions (OIDC)
# ---------------------------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository (\"owner/name\") whose workflows may assume the deploy, Terraform, plan and system-test roles. Null creates no GitHub roles."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be null or \"owner/name\"."
  }
}

variable "github_branch" {
  description = "Branch whose workflow runs may assume the system-test role (jobs without an environment present repo:<repository>:ref:refs/heads/<branch>)."
  type        = string
  default     = "main"
}

variable "github_deploy_environment" {
  description = "GitHub environment the release and deploy jobs run in; only jobs in it can assume the deploy role. Restrict its deployment branches to github_branch in the repository settings."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.github_deploy_environment))
    error_message = "github_deploy_environment must be a GitHub environment name (letters, digits, '_', '.', '-')."
  }
}

variable "github_terraform_environment" {
  description = "GitHub environment the Terraform workflow's apply job runs in; only jobs in it can assume the Terraform role (broad rights). Give it required reviewers and restrict its deployment branches to github_branch in the repository settings."
  type        = string
  default     = "terraform"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.github_terraform_environment)) && var.github_terraform_environment != var.github_deploy_environment
    error_message = "github_terraform_environment must be a GitHub environment name, different from github_deploy_environment (else deploy jobs could assume the Terraform role)."
  }
}

variable "terraform_state_bucket" {
  description = "S3 bucket holding this configuration's state (the backend's bucket). The plan role may read only the current state object in it, never older versions. Null: the plan role gets no state access."
  type        = string
  default     = null
}

variable "terraform_state_key" {
  description = "Key of the state object in terraform_state_bucket (the backend's key)."
  type        = string
  default     = "queue2bucket/terraform.tfstate"
}

variable "create_github_oidc_provider" {
  description = "Create the token.actions.githubusercontent.com OIDC provider. Set to false when the account already has one (there can be only one per account)."
  type        = bool
  default     = true
}

variable "terraform_role_policy_arns" {
  description = "Managed policies attached to the role the Terraform workflow's apply job assumes (environment github_terraform_environment). Applying this configuration creates IAM roles, so the role needs broad rights; the default is AdministratorAccess."
  type        = list(string)
  default     = ["arn:aws:iam::aws:policy/AdministratorAccess"]
}
