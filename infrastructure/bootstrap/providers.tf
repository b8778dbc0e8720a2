provider "aws" {
  region = var.region

  # Refuse to touch any account other than the one the settings name.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      Environment = var.environment
      Project     = var.project
      ManagedBy   = "terraform-bootstrap"
    }
  }
}

data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition

  # Every ARN the policies name is computed here from the variables, never
  # read from a created resource: the application root creates the
  # repositories, functions and log groups under exactly these names (the
  # xtask passes both roots the same names from the settings), and the whole
  # CI policy is known at plan time, so it can be audited from a saved plan
  # before anything is applied.
  iam    = "arn:${local.partition}:iam::${var.account_id}"
  ecr    = "arn:${local.partition}:ecr:${var.region}:${var.account_id}"
  lambda = "arn:${local.partition}:lambda:${var.region}:${var.account_id}"
  logs   = "arn:${local.partition}:logs:${var.region}:${var.account_id}"

  functions = {
    for key, f in var.functions : key => {
      function_name       = f.function_name
      function_arn        = "${local.lambda}:function:${f.function_name}"
      repository_arn      = "${local.ecr}:repository/${f.repository_name}"
      execution_role_name = f.execution_role_name
      execution_role_arn  = "${local.iam}:role/${f.execution_role_name}"
      # Lambda's default group for the function, so it needs no
      # logging_config. The tagging APIs take the group's ARN;
      # CreateLogStream and PutLogEvents its streams (`:*`).
      log_group_arn   = "${local.logs}:log-group:/aws/lambda/${f.function_name}"
      log_streams_arn = "${local.logs}:log-group:/aws/lambda/${f.function_name}:*"
    }
  }

  function_arns       = [for f in values(local.functions) : f.function_arn]
  repository_arns     = [for f in values(local.functions) : f.repository_arn]
  execution_role_arns = [for f in values(local.functions) : f.execution_role_arn]
  log_group_arns      = flatten([for f in values(local.functions) : [f.log_group_arn, f.log_streams_arn]])

  # The promotion source's repositories (same partition; its region equals
  # var.region, checked by the variable).
  promotion_repository_arns = var.promotion_source == null ? [] : [
    for name in var.promotion_source.repository_names :
    "arn:${local.partition}:ecr:${var.promotion_source.region}:${var.promotion_source.account_id}:repository/${name}"
  ]

  deploy_role_name = "${var.environment}-${var.project}-deploy"

  state_bucket_arn = "arn:${local.partition}:s3:::${var.state_bucket}"

  # The application root's state key, which CI reads and writes.
  app_state_key = coalesce(var.app_state_key, "${var.environment}/${var.project}.tfstate")

  github_oidc_host = "token.actions.githubusercontent.com"
}
