terraform {
  # 1.10 is the first release with S3-native state locking (`use_lockfile`).
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The same constraint as infrastructure/terraform; 5.100.0 is the
      # version in the offline mirror.
      version = "~> 5.100"
    }
  }
}
