variable "function_name" {
  description = "Name of the Lambda function; its log group is Lambda's default `/aws/lambda/<function_name>`, which the execution role's policy (infrastructure/bootstrap) is scoped to."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "function_name must be 1 to 64 letters, digits, '-' or '_' (Lambda's rule for unqualified function names)."
  }
}

variable "repository_name" {
  description = "Name of the function's own ECR repository, created here. image_uri must point into it."
  type        = string

  validation {
    condition     = length(var.repository_name) >= 2 && length(var.repository_name) <= 256 && can(regex("^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", var.repository_name))
    error_message = "repository_name must be 2 to 256 lowercase letters, digits and single '.', '_', '-' or '/' separators (ECR's rule for repository names)."
  }
}

variable "execution_role_name" {
  description = "Name of the function's execution role. The role is created by infrastructure/bootstrap (this module manages no IAM) and read by name, so a plan fails at once, naming the role, when the account layer has not been applied."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.execution_role_name))
    error_message = "execution_role_name must be 1 to 64 letters, digits or +=,.@_- (IAM's rule for role names)."
  }
}

variable "image_uri" {
  description = "Image the function runs, pinned by digest: `<registry>/<repository_name>@sha256:<64 hex>`. Null only for the ECR-only targeted apply of this module's aws_ecr_repository.this and aws_ecr_lifecycle_policy.this (the first deploy, before any image exists), and for `terraform destroy`."
  type        = string
  default     = null

  validation {
    condition     = var.image_uri == null || can(regex("^.+@sha256:[0-9a-f]{64}$", coalesce(var.image_uri, "-")))
    error_message = "image_uri must be pinned by digest (`<repository-url>@sha256:<64 lowercase hex>`). A tag such as `:latest` is refused: Lambda resolves a tag to a digest only when the function is created or its code is updated, so pushing a new image under the same tag changes nothing in Terraform's plan and never redeploys the function. Pass the digest the build produced."
  }
}

variable "architecture" {
  description = "Instruction set the image is built for: `x86_64` (docker platform linux/amd64) or `arm64` (linux/arm64)."
  type        = string

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be \"x86_64\" or \"arm64\" (the two architectures Lambda runs)."
  }
}

variable "invoke_mode" {
  description = "Invoke mode of the Function URL: `RESPONSE_STREAM` (the response is streamed as the function writes it) or `BUFFERED`. The Lambda Web Adapter is told the same mode (AWS_LWA_INVOKE_MODE), so URL and adapter cannot disagree."
  type        = string

  validation {
    condition     = contains(["RESPONSE_STREAM", "BUFFERED"], var.invoke_mode)
    error_message = "invoke_mode must be \"RESPONSE_STREAM\" or \"BUFFERED\"."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB (Lambda allows 128 to 10240)."
  type        = number

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240 && floor(var.memory_size) == var.memory_size
    error_message = "memory_size must be a whole number of MB between 128 and 10240."
  }
}

variable "timeout" {
  description = "Function timeout in seconds (1 to 900). A streamed response is cut off when it is reached."
  type        = number

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be a whole number of seconds between 1 and 900."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days. Must be one of the values CloudWatch Logs accepts."
  type        = number

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (the values PutRetentionPolicy accepts)."
  }
}

variable "environment_variables" {
  description = "Environment variables of the function (for the SSE app, e.g. CORS_ALLOW_ORIGINS). AWS_LWA_INVOKE_MODE is set by this module from invoke_mode and cannot be overridden."
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
    ])) == 0
    error_message = "environment_variables must not set Lambda's reserved runtime variables (AWS_REGION, AWS_LAMBDA_*, credentials, _HANDLER, ...) nor AWS_LWA_INVOKE_MODE, which this module derives from invoke_mode."
  }
}

variable "function_url_auth_type" {
  description = "Authorization of the Function URL: `AWS_IAM` (SigV4-signed callers with lambda:InvokeFunctionUrl) or `NONE` (public; the account layer must set allow_public_function_url)."
  type        = string

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.function_url_auth_type)
    error_message = "function_url_auth_type must be \"AWS_IAM\" or \"NONE\"."
  }
}

variable "description" {
  description = "Description of the Lambda function (at most 256 characters)."
  type        = string

  validation {
    condition     = length(var.description) <= 256
    error_message = "description must be at most 256 characters (Lambda's limit)."
  }
}

variable "repository_readers" {
  description = "Exact IAM role ARNs, usually the deploy roles of environments in other accounts that promote from this one, allowed to read this repository's images (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, ecr:DescribeImages) and nothing else. Empty for most environments."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.repository_readers : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "repository_readers must be exact IAM role ARNs (`arn:<partition>:iam::<12-digit account>:role/<name>`), no wildcards."
  }
}
