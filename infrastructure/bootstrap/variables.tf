variable "environment" {
  description = "Environment name (for example `preprod`, `prod`, `local`). Prefixes the deploy role's name (`<environment>-<project>-deploy`) and is the GitHub environment that role trusts."
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
  description = "Name of the S3 bucket this root creates for the environment's Terraform state (the application's and its own), for example `<environment>-<project>-tfstate`. The same value as the settings' terraform.backend.bucket."
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
  description = "Key of the application root's state object in state_bucket (its backend `key`), which the CI policy may read and write together with `<key>.tflock`. Null means the xtask's convention `<environment>/<project>.tfstate`."
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
  description = "Let CI manage the functions' resource policies (lambda:AddPermission, GetPolicy, RemovePermission), which the application root needs only when a function's function_url_auth_type is NONE (a public Function URL). False keeps CI from making a function public; set true before a function switches to NONE, and back to false only after every function has switched back to AWS_IAM."
  type        = bool
  default     = false
}

variable "project" {
  description = "Project name, for example `sse-streaming`: the `Project` tag, the middle of the deploy role's name (`<environment>-<project>-deploy`) and of the default app_state_key."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.project))
    error_message = "project must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters."
  }

  validation {
    condition     = length("${var.environment}-${var.project}-deploy") <= 64
    error_message = "The deploy role's name `<environment>-<project>-deploy` must fit IAM's 64 characters: shorten environment or project."
  }
}

variable "functions" {
  description = "The environment's functions, keyed like the application root's `functions` (the settings' `[functions.<key>]`), with the same names the application root creates them under. Each gets an execution role that may write only its own log group, and the CI policy names exactly these repositories, functions, log groups and roles."
  type = map(object({
    function_name       = string
    repository_name     = string
    execution_role_name = string
  }))

  validation {
    condition     = length(var.functions) > 0
    error_message = "functions must name at least one function."
  }

  validation {
    condition     = alltrue([for key in keys(var.functions) : can(regex("^[a-z][a-z0-9_-]{0,63}$", key))])
    error_message = "functions keys must start with a lowercase letter and contain only lowercase letters, digits, '-' and '_', at most 64 characters."
  }

  validation {
    condition = alltrue(flatten([
      for f in values(var.functions) : [
        can(regex("^[A-Za-z0-9_-]{1,64}$", f.function_name)),
        can(regex("^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", f.repository_name)),
        can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", f.execution_role_name)),
      ]
    ]))
    error_message = "Each function needs a valid function_name (1-64 of A-Za-z0-9_-), repository_name (ECR: lowercase, digits, single ._-/ separators) and execution_role_name (1-64 of A-Za-z0-9+=,.@_-). Wildcards are never valid: the policies name exact resources."
  }

  validation {
    condition = alltrue([
      for field in ["function_name", "repository_name", "execution_role_name"] :
      length(distinct([for f in values(var.functions) : f[field]])) == length(var.functions)
    ])
    error_message = "Every function needs its own function_name, repository_name and execution_role_name: each execution role may write only its own function's log group."
  }
}

variable "promotion_source" {
  description = "The environment this one promotes images from (settings `promote_from`), or null: its account, its region (must equal region: a promoted image is copied within one region; across regions it would need ECR replication) and the names of its repositories. CI may then read exactly those repositories (ecr:BatchGetImage, GetDownloadUrlForLayer, DescribeImages), nothing else; the source's repositories must also grant this environment's deploy role the reads (their repository_readers)."
  type = object({
    account_id       = string
    region           = string
    repository_names = list(string)
  })
  default = null

  validation {
    condition = var.promotion_source == null ? true : (
      can(regex("^[0-9]{12}$", var.promotion_source.account_id))
      && length(var.promotion_source.repository_names) > 0
      && alltrue([for name in var.promotion_source.repository_names : can(regex("^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", name))])
    )
    error_message = "promotion_source needs a 12-digit account_id and at least one exact repository name (no wildcards)."
  }

  validation {
    condition     = var.promotion_source == null ? true : var.promotion_source.region == var.region
    error_message = "promotion_source.region must equal region: images are promoted by copying them within one region (another region would need ECR replication, which this project does not set up)."
  }
}
