variable "environment" {
  description = "Environment name (for example `dev`, `prod`, `local`). Prefixes every resource name; must match the environment infrastructure/bootstrap was applied for."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.environment))
    error_message = "environment must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters (it prefixes ECR, Lambda and log group names)."
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
  description = "AWS region of the ECR repository, the Lambda function and its log group."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region code, for example `eu-west-1`."
  }
}

variable "platform" {
  description = "Container platform the image is built for (`linux/amd64` or `linux/arm64`); selects the Lambda architecture."
  type        = string

  validation {
    condition     = contains(["linux/amd64", "linux/arm64"], var.platform)
    error_message = "platform must be \"linux/amd64\" or \"linux/arm64\" (the two architectures Lambda runs)."
  }
}

variable "image_uri" {
  description = "Image the function runs, pinned by digest: `<registry>/<repository>@sha256:<64 hex>`. Null only for the ECR-only bootstrap apply (`-target=aws_ecr_repository.this -target=aws_ecr_lifecycle_policy.this`) before any image exists, and for `terraform destroy`."
  type        = string
  default     = null

  validation {
    condition     = var.image_uri == null || can(regex("^.+@sha256:[0-9a-f]{64}$", coalesce(var.image_uri, "-")))
    error_message = "image_uri must be pinned by digest (`<repository-url>@sha256:<64 lowercase hex>`). A tag such as `:latest` is refused: Lambda resolves a tag to a digest only when the function is created or its code is updated, so pushing a new image under the same tag changes nothing in Terraform's plan and never redeploys the function. Pass the digest the build produced."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB (Lambda allows 128 to 10240)."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240 && floor(var.memory_size) == var.memory_size
    error_message = "memory_size must be a whole number of MB between 128 and 10240."
  }
}

variable "timeout" {
  description = "Function timeout in seconds (1 to 900). A streamed response is cut off when it is reached."
  type        = number
  default     = 60

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be a whole number of seconds between 1 and 900."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days. Must be one of the values CloudWatch Logs accepts."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (the values PutRetentionPolicy accepts)."
  }
}

variable "environment_variables" {
  description = "Extra environment variables for the function. AWS_LWA_INVOKE_MODE is set by this module to match the Function URL's invoke mode and cannot be overridden."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment_variables) : can(regex("^[a-zA-Z][a-zA-Z0-9_]+$", k))])
    error_message = "environment_variables keys must start with a letter and contain only letters, digits and '_' (Lambda's rule for variable names)."
  }

  validation {
    condition = length(setintersection(keys(var.environment_variables), [
      "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
      "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
      "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
      "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
      "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LWA_INVOKE_MODE",
      "CORS_ALLOW_ORIGINS",
    ])) == 0
    error_message = "environment_variables must not set Lambda's reserved runtime variables (AWS_REGION, AWS_LAMBDA_*, credentials, _HANDLER, ...) nor AWS_LWA_INVOKE_MODE, which this module derives from the Function URL's invoke mode, nor CORS_ALLOW_ORIGINS, which comes from cors_allow_origins."
  }
}

variable "cors_allow_origins" {
  description = "Origins whose pages may read the stream from a browser (CORS), e.g. [\"https://app.example.com\"], or [\"*\"] for any. Empty: no CORS headers. Applied by the app only (CORS_ALLOW_ORIGINS), never also by the Function URL, which would duplicate the headers."
  type        = list(string)
  default     = []

  validation {
    condition = (
      var.cors_allow_origins == ["*"]
      || alltrue([for o in var.cors_allow_origins : can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", o))])
    )
    error_message = "cors_allow_origins must be exact origins (scheme://host[:port], no path and no trailing slash), or [\"*\"] alone."
  }
}

variable "function_url_auth_type" {
  description = "Authorization of the Function URL: `AWS_IAM` (SigV4-signed callers with lambda:InvokeFunctionUrl) or `NONE` (public)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.function_url_auth_type)
    error_message = "function_url_auth_type must be \"AWS_IAM\" or \"NONE\"."
  }
}
