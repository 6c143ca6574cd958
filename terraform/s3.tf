# The bucket the worker stores messages in (one JSON object per message below
# var.s3_key_prefix).

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
