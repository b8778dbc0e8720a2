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

# Names shared with infrastructure/bootstrap, whose policies are scoped to
# exactly these resources.
module "names" {
  source = "../modules/naming"

  environment = var.environment
  partition   = data.aws_partition.current.partition
  account_id  = var.account_id
  region      = var.region
}

locals {
  # One name for the repository and the function.
  name = module.names.function_name
}
