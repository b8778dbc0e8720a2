terraform {
  # 1.10 is the first release with S3-native state locking (`use_lockfile`),
  # which backend.tf relies on instead of a DynamoDB lock table.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100.0 is the version in the offline mirror; stay on the 5.x line.
      version = "~> 5.100"
    }
  }
}
