variable "environment" {
  description = "Environment name (for example `dev`, `prod`, `local`). Tags every resource; must match the environment infrastructure/bootstrap was applied for."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.environment))
    error_message = "environment must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters."
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
  description = "AWS region of the functions, their repositories and log groups."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region code, for example `eu-west-1`."
  }
}

variable "project" {
  description = "Project name, for example `sse-streaming`: the `Project` tag of every resource, and the middle of the account layer's names (`<environment>-<project>-deploy`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.project))
    error_message = "project must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters."
  }
}

variable "functions" {
  description = <<-EOT
    The environment's functions, keyed by a stable name (the settings' `[functions.<key>]`; part of
    every state address, module.function["<key>"]). Each gets its own ECR repository, log group,
    Lambda function and Function URL (modules/function, whose variables describe each field). The
    execution role is created by infrastructure/bootstrap and only read here. image_uri is null
    only for the ECR-only targeted apply of a new function's repository, and for destroy.
  EOT
  type = map(object({
    function_name          = string
    repository_name        = string
    execution_role_name    = string
    image_uri              = optional(string)
    architecture           = string
    invoke_mode            = string
    memory_size            = number
    timeout                = number
    log_retention_days     = number
    environment_variables  = map(string)
    function_url_auth_type = string
    description            = string
    repository_readers     = list(string)
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
    condition = alltrue([
      for field in ["function_name", "repository_name", "execution_role_name"] :
      length(distinct([for f in values(var.functions) : f[field]])) == length(var.functions)
    ])
    error_message = "Every function needs its own function_name, repository_name and execution_role_name: a repository holds one function's images (image_uri must point into it), and an execution role may write only its own function's log group."
  }
}
