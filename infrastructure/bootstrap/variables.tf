variable "environment" {
  description = "Environment name (for example `preprod`, `prod`, `local`). Prefixes every resource name and is the GitHub environment the deploy role trusts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.environment))
    error_message = "environment must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters (it prefixes S3, ECR, Lambda and IAM names)."
  }
}

variable "account_id" {
  description = "AWS account ID the environment lives in. The provider refuses to operate on any other account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be exactly 12 digits."
  }
}

variable "region" {
  description = "AWS region of the state bucket and of the application's regional resources (ECR, Lambda, CloudWatch Logs) the policies are scoped to."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region code, for example `eu-west-1`."
  }
}

variable "state_bucket" {
  description = "Name of the S3 bucket this root creates for the environment's Terraform state (the application's and its own), for example `<environment>-sse-streaming-tfstate`. The same value as the settings' terraform.backend.bucket."
  type        = string

  validation {
    condition = alltrue([
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket)),
      !strcontains(var.state_bucket, ".."),
      !can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.state_bucket)),
      !startswith(var.state_bucket, "xn--"),
      !endswith(var.state_bucket, "-s3alias"),
    ])
    error_message = "state_bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, no '..', not an IP address, no `xn--` prefix or `-s3alias` suffix."
  }
}

variable "app_state_key" {
  description = "Key of the application root's state object in state_bucket (its backend `key`), which the CI policy may read and write together with `<key>.tflock`. Null means the xtask's convention `<environment>/sse-streaming.tfstate`."
  type        = string
  default     = null

  validation {
    condition     = var.app_state_key == null || can(regex("^[A-Za-z0-9!_.*'()/-]+$", coalesce(var.app_state_key, "-")))
    error_message = "app_state_key must be a plain S3 key (letters, digits and !_.*'()/-)."
  }
}

variable "state_noncurrent_version_expiration_days" {
  description = "Days a superseded (noncurrent) version of a state object is kept in state_bucket before it expires; the window in which an older state can be restored."
  type        = number
  default     = 90

  validation {
    condition     = var.state_noncurrent_version_expiration_days >= 1 && floor(var.state_noncurrent_version_expiration_days) == var.state_noncurrent_version_expiration_days
    error_message = "state_noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "github_repository" {
  description = "GitHub repository (`owner/repo`) whose Actions jobs, running in the GitHub environment named like `environment`, may assume the deploy role through OIDC. Null creates no deploy role (the local environment)."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$", coalesce(var.github_repository, "-")))
    error_message = "github_repository must be \"owner/repo\" (no URL, no .git suffix)."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (token.actions.githubusercontent.com). An account holds only one per URL: set true for the first environment bootstrapped in an account, false for the others, whose deploy roles then trust the existing provider by its ARN (derived from account_id, no lookup)."
  type        = bool
  default     = false
}

variable "deny_insecure_transport" {
  description = "Attach the bucket policy that denies every request to state_bucket made without TLS. Always true on AWS; false only for the local emulator, which speaks plain HTTP and would otherwise refuse Terraform its own state. The xtask sets it for local-stack environments only, never from the settings."
  type        = bool
  default     = true
}

variable "expire_noncurrent_state_versions" {
  description = "Manage the state bucket's lifecycle rule (noncurrent versions expire after state_noncurrent_version_expiration_days, stale multipart uploads after a week). Always true on AWS; false only for the local emulator, whose state resets on `local down`, where the provider's fixed wait of about a minute after creating the rule would be paid by every fresh emulator and test environment. The xtask sets it for local-stack environments only, never from the settings."
  type        = bool
  default     = true
}

variable "allow_public_function_url" {
  description = "Let CI manage the function's resource policy (lambda:AddPermission, GetPolicy, RemovePermission), which the application root needs only when its function_url_auth_type is NONE (a public Function URL). False keeps CI from making the function public; set true before an environment switches to NONE, and back to false only after it has switched back to AWS_IAM."
  type        = bool
  default     = false
}
