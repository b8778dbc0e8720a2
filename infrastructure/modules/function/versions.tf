terraform {
  # The same constraints as both roots: 1.10 for S3-native state locking in
  # the callers, and the 5.x provider line of the offline mirror (5.100.0).
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}
