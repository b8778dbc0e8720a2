# Partial configuration, like infrastructure/terraform: bucket, key, region,
# use_lockfile and the emulator-only switches come from the xtask as
# `-backend-config=KEY=VALUE`; the key is `<environment>/bootstrap.tfstate`.
#
# This root creates the bucket its own state lives in, so its very first run
# cannot use this backend. The xtask then copies this root (and ../modules)
# under target/, writes `local_backend_override.tf` (`terraform { backend
# "local" { path = ... } }`) into the copy, applies there with local state, and
# runs `terraform init -migrate-state -force-copy` here to move the state into
# the new bucket. Every later run finds the bucket and uses this backend
# directly. README.md in this directory lists the steps.
terraform {
  backend "s3" {}
}
