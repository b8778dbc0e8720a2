provider "aws" {
  region = var.region

  # Refuse to touch any account other than the one the settings name.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      Environment = var.environment
      Project     = "sse-streaming"
      ManagedBy   = "terraform-bootstrap"
    }
  }
}

data "aws_partition" "current" {}

module "names" {
  source = "../modules/naming"

  environment = var.environment
  partition   = data.aws_partition.current.partition
  account_id  = var.account_id
  region      = var.region
}

locals {
  partition = data.aws_partition.current.partition

  state_bucket_arn = "arn:${local.partition}:s3:::${var.state_bucket}"

  # The application root's state key, which CI reads and writes.
  app_state_key = coalesce(var.app_state_key, "${var.environment}/sse-streaming.tfstate")

  github_oidc_host = "token.actions.githubusercontent.com"
}
