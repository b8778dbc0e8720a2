provider "aws" {
  region = var.region

  # Refuse to touch any account other than the one the settings name, so a
  # stray profile or role can never apply an environment into the wrong account.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      Environment = var.environment
      Project     = "sse-streaming"
      ManagedBy   = "terraform"
    }
  }
}

data "aws_partition" "current" {}

locals {
  # One name for the repository and the function; the IAM names share the
  # `<env>-sse-streaming-` prefix that the CI policy is scoped to.
  name = "${var.environment}-sse-streaming-lambda"

  partition  = data.aws_partition.current.partition
  account_id = var.account_id
}
