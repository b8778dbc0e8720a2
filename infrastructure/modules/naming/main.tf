# The one place that turns an environment name into the names and ARNs of its
# resources. Both roots use it: infrastructure/bootstrap scopes the CI policy
# and the execution role's log policy to these exact ARNs, and
# infrastructure/terraform creates the resources under these exact names. A
# name changed here changes both sides together, so the policy can never drift
# away from what it is meant to cover.
#
# No provider and no API calls: everything is computed from the inputs.

terraform {
  required_version = ">= 1.10"
}

variable "environment" {
  description = "Environment name; every resource name starts with `<environment>-sse-streaming`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.environment))
    error_message = "environment must start with a lowercase letter and contain only lowercase letters, digits and '-', at most 32 characters."
  }
}

variable "partition" {
  description = "AWS partition of the account (`aws`, `aws-cn`, `aws-us-gov`)."
  type        = string
}

variable "account_id" {
  description = "12-digit AWS account ID the environment lives in."
  type        = string
}

variable "region" {
  description = "AWS region of the environment's regional resources (ECR, Lambda, CloudWatch Logs)."
  type        = string
}

locals {
  # Every project resource name matches `*-sse-streaming-*`: that pattern is
  # the outer bound a reviewer can rely on, and each policy uses the exact
  # names below, never the pattern.
  prefix = "${var.environment}-sse-streaming"

  # The function and its repository share one name.
  function_name       = "${local.prefix}-lambda"
  repository_name     = "${local.prefix}-lambda"
  log_group_name      = "/aws/lambda/${local.function_name}"
  execution_role_name = "${local.prefix}-exec"
  deploy_role_name    = "${local.prefix}-deploy"

  iam    = "arn:${var.partition}:iam::${var.account_id}"
  ecr    = "arn:${var.partition}:ecr:${var.region}:${var.account_id}"
  lambda = "arn:${var.partition}:lambda:${var.region}:${var.account_id}"
  logs   = "arn:${var.partition}:logs:${var.region}:${var.account_id}"
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = local.function_name
}

output "function_arn" {
  description = "Unqualified ARN of the Lambda function."
  value       = "${local.lambda}:function:${local.function_name}"
}

output "repository_name" {
  description = "Name of the ECR repository."
  value       = local.repository_name
}

output "repository_arn" {
  description = "ARN of the ECR repository."
  value       = "${local.ecr}:repository/${local.repository_name}"
}

output "log_group_name" {
  description = "Name of the function's CloudWatch log group: Lambda's default `/aws/lambda/<function name>`, so the function needs no logging_config."
  value       = local.log_group_name
}

output "log_group_arn" {
  description = "ARN of the log group itself (`...:log-group:<name>`), the resource of log-group-level actions."
  value       = "${local.logs}:log-group:${local.log_group_name}"
}

output "log_streams_arn" {
  description = "ARN pattern of the log group's streams (`...:log-group:<name>:*`), the resource of CreateLogStream and PutLogEvents."
  value       = "${local.logs}:log-group:${local.log_group_name}:*"
}

output "log_groups_arn" {
  description = "ARN pattern of every log group in the account and region (`...:log-group:*`); logs:DescribeLogGroups authorizes only against it."
  value       = "${local.logs}:log-group:*"
}

output "execution_role_name" {
  description = "Name of the function's execution role (created by infrastructure/bootstrap)."
  value       = local.execution_role_name
}

output "execution_role_arn" {
  description = "ARN of the function's execution role."
  value       = "${local.iam}:role/${local.execution_role_name}"
}

output "deploy_role_name" {
  description = "Name of the role GitHub Actions assumes to deploy the environment (created by infrastructure/bootstrap)."
  value       = local.deploy_role_name
}
