# The environment's Terraform state bucket: the application root's state
# (`<environment>/<project>.tfstate`, read and written by CI) and this
# root's own (`<environment>/bootstrap.tfstate`, administrators only).
resource "aws_s3_bucket" "state" {
  bucket = var.state_bucket

  # Losing the bucket loses every state in it; a destroy must never take it.
  lifecycle {
    prevent_destroy = true
  }
}

# Every write keeps the previous state as a noncurrent version, so a corrupted
# or wrongly applied state can be restored.
resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id

  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-KMS with the AWS managed key `aws/s3`: its key policy lets every
# principal of the account use it through S3, so neither CI nor the
# administrators need KMS permissions, and each decryption is logged in
# CloudTrail. The bucket key keeps the KMS request count (and cost) low.
resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket = aws_s3_bucket.state.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: only the bucket policy and IAM decide who reads the state.
resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "state_bucket" {
  # State holds resource attributes and outputs; it must never cross the
  # network in clear text, whoever the caller is.
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.state.arn,
      "${aws_s3_bucket.state.arn}/*",
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
}

resource "aws_s3_bucket_policy" "state" {
  count = var.deny_insecure_transport ? 1 : 0

  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.state_bucket.json

  # PutBucketPolicy is refused while the public access block is being
  # created; order them.
  depends_on = [aws_s3_bucket_public_access_block.state]
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  count = var.expire_noncurrent_state_versions ? 1 : 0

  bucket = aws_s3_bucket.state.id

  rule {
    id     = "expire-noncurrent-state-versions"
    status = "Enabled"

    # Every object in the bucket.
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.state_noncurrent_version_expiration_days
    }

    # Terraform writes state with single PUTs, so an incomplete multipart
    # upload is debris from some other client; clear it after a week.
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # The rule applies to versions, so versioning must be on first.
  depends_on = [aws_s3_bucket_versioning.state]
}
