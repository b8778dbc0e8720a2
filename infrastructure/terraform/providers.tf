provider "aws" {
  region = var.region

  # Refuse to touch any account other than the one the settings name, so a
  # stray profile or role can never apply an environment into the wrong account.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      Environment = var.environment
      Project     = var.project
      ManagedBy   = "terraform"
    }
  }
}
