# Partial configuration: every value is per environment and comes from the
# xtask as `-backend-config=KEY=VALUE` (bucket, key, region, use_lockfile=true,
# plus the emulator-only switches for the local environment). The S3 endpoint
# comes from AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 in the environment, so no
# endpoint is ever written here.
terraform {
  backend "s3" {}
}
