# Execution role of the function: it may only write its own log group.
data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.environment}-sse-streaming-exec"
  description        = "Execution role of the ${local.name} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# An inline policy scoped to the one log group, rather than the managed
# AWSLambdaBasicExecutionRole, which may write to every log group in the
# account. Terraform creates the group, so logs:CreateLogGroup is not needed.
data "aws_iam_policy_document" "lambda_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda_logs" {
  name   = "logs"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda_logs.json
}

# GitHub Actions deploy role (OIDC). Created only when github_repository is
# set; it carries the same CI policy as the optional CI user.
locals {
  create_deploy_role = var.github_repository != null

  github_oidc_host = "token.actions.githubusercontent.com"

  # An account has at most one OIDC provider per URL, and its ARN is fully
  # determined by the account and the host, so an existing one is referenced
  # without a lookup (and without granting CI iam:ListOpenIDConnectProviders).
  github_oidc_provider_arn = (
    var.create_github_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.github_oidc_host}"
  )
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # No thumbprint_list: IAM trusts GitHub's OIDC endpoint through its own
  # root CA library, and the provider leaves the attribute optional.
}

data "aws_iam_policy_document" "github_assume" {
  count = local.create_deploy_role ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    # Only jobs that run in the GitHub environment of the same name (where
    # required reviewers and branch rules apply) may deploy; a job on an
    # arbitrary branch or a pull request gets a different `sub`.
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:sub"
      values   = ["repo:${var.github_repository}:environment:${var.environment}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  count = local.create_deploy_role ? 1 : 0

  name                 = "${var.environment}-sse-streaming-deploy"
  description          = "Assumed by GitHub Actions (${var.github_repository}, environment ${var.environment}) to deploy ${local.name}"
  assume_role_policy   = data.aws_iam_policy_document.github_assume[0].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "deploy_ci" {
  count = local.create_deploy_role ? 1 : 0

  role       = aws_iam_role.deploy[0].name
  policy_arn = aws_iam_policy.ci.arn
}
