# The bucket the worker stores messages in (one JSON object per message below
# var.s3_key_prefix), and where the API stages emails too large for a queue
# message (below var.s3_staging_prefix; the claim check, see iam.tf).

resource "aws_s3_bucket" "emails" {
  # checkov:skip=CKV_AWS_18: Server access logging would need a second bucket; enable CloudTrail data events if object-level auditing is required.
  # checkov:skip=CKV_AWS_144: Cross-region replication is out of scope; versioning protects against overwrites and deletes.
  # checkov:skip=CKV_AWS_145: Default encryption is SSE-S3 by design (no customer-managed KMS key, so the worker needs no kms permissions).
  # checkov:skip=CKV2_AWS_62: Nothing consumes object-created events; add a notification when a consumer exists.
  bucket_prefix = "${var.name}-emails-"
  force_destroy = var.s3_force_destroy
}

resource "aws_s3_bucket_public_access_block" "emails" {
  bucket = aws_s3_bucket.emails.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "emails" {
  bucket = aws_s3_bucket.emails.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "emails" {
  bucket = aws_s3_bucket.emails.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "emails" {
  bucket = aws_s3_bucket.emails.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "emails" {
  bucket = aws_s3_bucket.emails.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.s3_noncurrent_version_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Staged emails (the claim check). The worker removes each one once it has
  # stored the email under its key; this rule removes the rest: staged
  # emails whose pointer never made it to the queue (the API answered 503,
  # so the client sends the email again, under a new id) and those whose
  # removal failed.
  #
  # It never removes an email that is not stored yet, which matters because
  # a worker that finds a pointer's staged object gone takes the email as
  # stored (that is how a redelivery after the clean-up is acknowledged):
  # the API writes the staged object before it queues the pointer, so the
  # object is always older than its pointer, and no pointer outlives the
  # queue's retention plus the dead-letter queue's (the sum also covers one
  # redrive from the DLQ back to the queue, even if the queue counts the
  # message as new). s3_staging_expiration_days must exceed that sum
  # (variables.tf), and S3 rounds an expiry only later, to the next midnight
  # UTC. When it fires, no queue can hold a pointer to the object any more.
  rule {
    id     = "expire-staged-emails"
    status = "Enabled"

    filter {
      prefix = var.s3_staging_prefix
    }

    expiration {
      days = var.s3_staging_expiration_days
    }

    # The bucket is versioned, so a removal or an expiry leaves the staged
    # bytes behind as a noncurrent version. Nothing reads them (the worker
    # removes after storing, the expiry comes after every pointer is gone),
    # so they go after a day, not after s3_noncurrent_version_retention_days:
    # of two expirations that apply to an object, S3 takes the shorter.
    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    # The API stages with one PutObject; this only bounds what a failed
    # upload by anything else could leave.
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # The delete markers the removals leave, once the version under them is
  # gone (S3 does not take expired_object_delete_marker beside days in one
  # rule).
  rule {
    id     = "remove-staging-delete-markers"
    status = "Enabled"

    filter {
      prefix = var.s3_staging_prefix
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.emails]
}

data "aws_iam_policy_document" "emails_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.emails.arn,
      "${aws_s3_bucket.emails.arn}/*",
    ]

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

  statement {
    sid     = "DenyOutdatedTls"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.emails.arn,
      "${aws_s3_bucket.emails.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "emails" {
  bucket = aws_s3_bucket.emails.id
  policy = data.aws_iam_policy_document.emails_bucket.json

  # Putting a policy while the public access block is being created can fail.
  depends_on = [aws_s3_bucket_public_access_block.emails]
}
